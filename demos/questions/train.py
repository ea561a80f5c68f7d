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


def drop_ids(ids: torch.Tensor, p: float, keep_below: int, to: int, gen: torch.Generator) -> torch.Tensor:
    """Replace ids >= keep_below by `to` with probability p: word dropout
    (tokens -> [UNK]) and feature dropout (features -> padding)."""
    if p <= 0:
        return ids
    hit = (torch.rand(ids.shape, generator=gen) < p) & (ids >= keep_below)
    return ids.masked_fill(hit, to)


# ---------------------------------------------------------------- training

def train_member(cfg: ModelConfig, tc: TrainConfig, rows: list[list[int]], feats: list[list[int]],
                 coarse: list[int], fine: list[int], seed: int, log=print) -> Member:
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
            zc, zf = net(x, f)
            loss = (F.cross_entropy(zc, yc[idx], label_smoothing=tc.label_smoothing)
                    + F.cross_entropy(zf, yf[idx], label_smoothing=tc.label_smoothing))
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


def train_ensemble(cfg: ModelConfig, tc: TrainConfig, data: Encoded, log=print) -> tuple[Ensemble, FeatureVocab]:
    """Members differ by seed only; the token row map and the feature
    vocabulary come from these training questions alone."""
    rows = row_map(cfg.vocab_size, {i for row in data.ids for i in row})
    vocab = FeatureVocab.build(data.feats, tc.min_feature_count)
    cfg = ModelConfig(**{**cfg.to_json(), "n_rows": max(rows) + 1, "n_features": len(vocab)})
    model = Ensemble(cfg)
    model.rows.copy_(torch.tensor(rows))
    row_ids = [[rows[i] for i in r] for r in data.ids]
    feat_ids = [vocab.ids(f) for f in data.feats]
    for k in range(cfg.members):
        model.members[k] = train_member(cfg, tc, row_ids, feat_ids, data.coarse, data.fine,
                                        seed=tc.seed * 1000 + k, log=log)
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
    return (f"**Model.** {cfg.members} members averaged. Each member's encoder concatenates convolutions "
            f"of widths {list(cfg.widths)} ({cfg.channels} channels each), max-pooled, over {cfg.dim}-d "
            f"WordPiece embeddings, and {bag}.")


def write_card(out: Path, command: str, val: Report, cfg: ModelConfig, tc: TrainConfig,
               n_train: int, n_val: int, full: bool, seconds: float) -> None:
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
Trained from scratch; weights stored as fp16 safetensors.

**Data.** TREC (Li & Roth 2002) `train_5500.label`: a stratified 10% validation split
({n_val} questions) held out, {n_train} used for training; {final}.

## Validation figures (held-out 10% of the training file — not the TREC test set)

| head | accuracy |
| --- | --- |
| coarse (6 classes) | {val.coarse_accuracy:.3f} |
| fine (50 classes) | {val.fine_accuracy:.3f} |

Per coarse class on validation:

| class | n | precision | recall | F1 |
| --- | --- | --- | --- | --- |
{coarse_rows}

Per-class fine figures are in `config.json` under `validation.per_class`.

## Reproduce

```
{command}
```

CPU only, {seconds / 60:.1f} minutes on 2 threads; seeded (seed {tc.seed}).

## Limits

English questions in the style of TREC (short factoid questions). Anything else
(statements, other languages, gibberish) still gets an answer type, with low
confidence: read the probabilities.
""", encoding="utf-8")


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
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    started = time.time()
    tc = TrainConfig(epochs=args.epochs, seed=args.seed, lr=args.lr, min_feature_count=args.min_feature_count)
    examples = read_examples(args.data, args.limit)
    labels = LabelSet.from_examples(examples)
    tokenizer = wordpiece.build(args.vocab)
    cfg = ModelConfig(vocab_size=tokenizer.get_vocab_size(), n_coarse=len(labels.coarse),
                      n_fine=len(labels.fine), max_len=args.max_len, dim=args.dim, channels=args.channels,
                      dropout=args.dropout, members=args.members)
    train, val = stratified_split(examples, args.val_frac, args.seed)
    print(f"{len(examples)} questions: {len(train)} train, {len(val)} validation; "
          f"{len(labels.coarse)} coarse, {len(labels.fine)} fine classes")

    print("held-out run")
    model, vocab = train_ensemble(cfg, tc, encode_examples(tokenizer, train, labels, cfg.max_len))
    extra = {"coarse_head_weight": tc.coarse_head_weight}
    report = evaluate(folder.Loaded(model, tokenizer, vocab, labels, extra), val) if val else None
    if report:
        print_report(report, "validation")

    full = not args.no_full and bool(val)
    if full:
        print("final run on all questions")
        model, vocab = train_ensemble(cfg, tc, encode_examples(tokenizer, examples, labels, cfg.max_len))

    seconds = time.time() - started
    command = "python -m demos.questions.train " + " ".join(
        a for a in (f"--out {args.out}", f"--epochs {args.epochs}", f"--seed {args.seed}",
                    f"--members {args.members}", f"--dim {args.dim}", f"--channels {args.channels}",
                    f"--lr {args.lr}", f"--dropout {args.dropout}", f"--min-feature-count {args.min_feature_count}", f"--max-len {args.max_len}",
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
        "train_seconds": round(seconds, 1),
        "command": command,
    })
    (args.out / "examples").mkdir(exist_ok=True)
    (args.out / "examples" / "examples.json").write_text(json.dumps(EXAMPLE_QUESTIONS, indent=2) + "\n")
    if report:
        write_card(args.out, command, report, model.cfg, tc, len(train), len(val), full, seconds)
    print(f"wrote {args.out} in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
