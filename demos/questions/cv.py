"""Stratified k-fold cross-validation of the questions recipes (issue 30):

    python -m demos.questions.cv --recipe mpnet-teacher [--folds 0,1] [--data PATH]
    python -m demos.questions.cv --recipe student-mpnet --folds cached   # rescore what is computed
    python -m demos.questions.cv --table                                  # every recipe, as markdown

Per fold, with nothing from the scored fold ever seen in training:
- the other k-1 folds are the training part; a stratified slice of it
  (--calib-frac) is held out from training to fit the temperatures, the rest
  trains the recipe;
- the recipe's logits for the scored fold and the slice are cached under
  .cache/questions/cv/ (keyed by recipe, fold, split and settings), so a rerun
  only scores; a teacher also labels its training questions and their
  perturbed copies, which is what a student of that fold distils from;
- accuracy (fine; coarse as the fine answer's class, and as the runtime mixes
  the heads), and expected calibration error before and after temperature
  scaling, per head.
Writes <out>/<recipe>.oof.label (out-of-fold predictions of the folds run, in
TREC format: `python -m demos.questions.evaluate --data GOLD --predictions
FILE` rescores it) and <out>/<recipe>.json (per fold and the mean, min-max).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from demos.questions.labels import Example, LabelSet, fold_fine, read_examples
from demos.questions.text import normalize
from demos.questions.train import DEFAULT_DATA, DEFAULT_VOCAB, PROJECT_ROOT, stratified_split

CACHE = PROJECT_ROOT / ".cache" / "questions" / "cv"


@dataclass(frozen=True)
class Recipe:
    """A named way to get a fold's logits. Teachers fine-tune on gold labels;
    an ensemble averages its members' probabilities on the same fold; students
    distil from `teacher`, a teacher recipe's logits for the same fold."""

    kind: str  # "minilm" | "mpnet" | "ensemble" | "student"
    epochs: int
    lr: float  # the encoder's; a teacher's heads get head_scale x
    teacher: str | None = None
    head_scale: float = 10.0
    members: tuple[str, ...] = ()  # an ensemble's teacher recipes
    distill: float = 0.5  # a student's weight on its teacher against the gold labels (train.TrainConfig's)
    temperature: float = 2.0  # a student's distillation temperature
    layers: int = 3  # a student's
    vocab: int | None = None  # a student's vocabulary: None, the whole shared one; else its most used pieces


RECIPES = {  # the teachers as demos.questions.teacher.TEACHERS has them (batched by length here)
    "minilm-teacher": Recipe("minilm", epochs=3, lr=8e-5),
    "mpnet-teacher": Recipe("mpnet", epochs=3, lr=5e-5, head_scale=40.0),
    "student-old": Recipe("student", epochs=5, lr=1e-4, teacher="minilm-teacher"),
    "student-mpnet": Recipe("student", epochs=5, lr=1e-4, teacher="mpnet-teacher"),
    "ensemble-teacher": Recipe("ensemble", epochs=0, lr=0.0, members=("minilm-teacher", "mpnet-teacher")),
    "student-ensemble": Recipe("student", epochs=5, lr=1e-4, teacher="ensemble-teacher"),
    # the shipped recipe with one change each, to close the teacher -> student gap
    "student-mpnet-d3": Recipe("student", epochs=5, lr=1e-4, teacher="mpnet-teacher", distill=0.3),
    "student-mpnet-d8": Recipe("student", epochs=5, lr=1e-4, teacher="mpnet-teacher", distill=0.8),
    "student-mpnet-e8": Recipe("student", epochs=8, lr=1e-4, teacher="mpnet-teacher"),
    # another shape in the same 10 MB: a fourth layer, paid for with 4,000 fewer pieces (9.5 MB int8)
    "student-mpnet-l4": Recipe("student", epochs=5, lr=1e-4, teacher="mpnet-teacher", layers=4, vocab=6000),
}


# ---------------------------------------------------------------- the split (pure)

def fold_of(labels: list[str], k: int, seed: int) -> list[int]:
    """The fold (0..k-1) of each example, stratified by label: each label's
    examples, shuffled, are dealt round the folds, each label starting where
    the previous one stopped so the folds' sizes differ by at most one."""
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[label].append(i)
    rng = random.Random(seed)
    out = [0] * len(labels)
    turn = 0
    for label in sorted(by_label):
        group = by_label[label]
        rng.shuffle(group)
        for i in group:
            out[i] = turn % k
            turn += 1
    return out


@dataclass(frozen=True)
class Split:
    fit: list[Example]  # trains the recipe
    calib: list[Example]  # fits the temperatures
    test: list[Example]  # the scored fold


def split(examples: list[Example], fold: int, k: int, seed: int, calib_frac: float) -> Split:
    folds = fold_of([e.fine for e in examples], k, seed)
    rest = [e for e, f in zip(examples, folds) if f != fold]
    fit, calib = stratified_split(rest, calib_frac, seed)
    return Split(fit, calib, [e for e, f in zip(examples, folds) if f == fold])


# ---------------------------------------------------------------- an ensemble (pure)

def ensemble_logits(members: list[torch.Tensor]) -> torch.Tensor:
    """The log of the members' mean probabilities: logits whose softmax is the
    ensemble's answer, so temperature scaling and distillation treat it like
    any one teacher's."""
    return torch.stack([z.log_softmax(-1) for z in members]).exp().mean(0).log()


# ---------------------------------------------------------------- scoring (pure)

@dataclass(frozen=True)
class FoldResult:
    recipe: str
    fold: int
    n: int
    coarse: float  # the class of the fine answer (what a TREC-format file says)
    coarse_mixed: float  # the runtime's rule: coarse head mixed with the folded fine head
    fine: float
    temperature_coarse: float
    temperature_fine: float
    ece_coarse: float
    ece_coarse_scaled: float
    ece_fine: float
    ece_fine_scaled: float
    unsure_share: float  # answers the tab flags unsure (top fine probability < runtime.UNSURE_BELOW)
    unsure_accuracy: float  # how often those are right anyway
    sure_accuracy: float  # and the rest
    seconds: float  # training + labelling, as measured when the cache was written
    epoch_seconds: list[float]


def score_fold(recipe: str, fold: int, labels: LabelSet, test: list[Example], calib: list[Example],
               logits: dict[str, tuple[torch.Tensor, torch.Tensor]], seconds: float,
               epoch_seconds: list[float], coarse_weight: float = 0.5) -> FoldResult:
    from demos.questions.calibration import below, ece, fit_temperature
    from demos.questions.runtime import UNSURE_BELOW

    def stack(examples):
        zc = torch.stack([logits[normalize(e.text)][0] for e in examples])
        zf = torch.stack([logits[normalize(e.text)][1] for e in examples])
        yc = torch.tensor([labels.coarse.index(e.coarse) for e in examples])
        yf = torch.tensor([labels.fine.index(e.fine) for e in examples])
        return zc, zf, yc, yf

    zc, zf, yc, yf = stack(test)
    cc, cf, cyc, cyf = stack(calib)
    tc, tf = fit_temperature(cc, cyc), fit_temperature(cf, cyf)
    fine_pred = zf.argmax(-1)
    to_coarse = torch.tensor(labels.fine_to_coarse())
    folded = torch.tensor([fold_fine(p, labels) for p in zf.softmax(-1).tolist()])
    mixed = coarse_weight * zc.softmax(-1) + (1 - coarse_weight) * folded
    unsure_share, unsure_accuracy, sure_accuracy = below(zf.softmax(-1), yf, UNSURE_BELOW)
    return FoldResult(
        recipe=recipe, fold=fold, n=len(test),
        coarse=to_coarse[fine_pred].eq(yc).float().mean().item(),
        coarse_mixed=mixed.argmax(-1).eq(yc).float().mean().item(),
        fine=fine_pred.eq(yf).float().mean().item(),
        temperature_coarse=tc, temperature_fine=tf,
        ece_coarse=ece(zc.softmax(-1), yc), ece_coarse_scaled=ece((zc / tc).softmax(-1), yc),
        ece_fine=ece(zf.softmax(-1), yf), ece_fine_scaled=ece((zf / tf).softmax(-1), yf),
        unsure_share=unsure_share, unsure_accuracy=unsure_accuracy, sure_accuracy=sure_accuracy,
        seconds=round(seconds, 1), epoch_seconds=[round(s, 1) for s in epoch_seconds])


def summary(results: list[FoldResult]) -> dict[str, dict[str, float]]:
    """Mean and min-max over folds of each figure."""
    out = {}
    for name in ("coarse", "coarse_mixed", "fine", "ece_coarse", "ece_coarse_scaled", "ece_fine",
                 "ece_fine_scaled", "unsure_share", "unsure_accuracy", "sure_accuracy", "seconds"):
        xs = [getattr(r, name) for r in results]
        out[name] = {"mean": round(sum(xs) / len(xs), 4), "min": round(min(xs), 4), "max": round(max(xs), 4)}
    return out


def trec_lines(examples: list[Example], logits: dict[str, tuple[torch.Tensor, torch.Tensor]],
               labels: LabelSet) -> list[str]:
    """Predictions in TREC format: the fine answer, then the question as given."""
    return [f"{labels.fine[int(logits[normalize(e.text)][1].argmax())]} {e.text}" for e in examples]


# ---------------------------------------------------------------- running a recipe on a fold

def _teacher(recipe: Recipe, sp: Split, labels: LabelSet, texts: list[str], seed: int, log):
    """Fine-tune a teacher on sp.fit; logits for `texts`. Returns (zc, zf, epoch seconds).
    The folds batch both teachers by length (a third less padding)."""
    from demos.questions import teacher

    spec = teacher.Teacher(recipe.kind, recipe.epochs, recipe.lr, recipe.head_scale, by_length=True)
    net, batch, epochs = teacher.fine_tune(spec, [normalize(e.text) for e in sp.fit],
                                           [labels.coarse.index(e.coarse) for e in sp.fit],
                                           [labels.fine.index(e.fine) for e in sp.fit],
                                           len(labels.coarse), len(labels.fine), seed=seed, log=log)
    started = time.time()
    zc, zf = teacher.logits(net, None, texts, batch=batch)
    log(f"  labelled {len(texts)} questions in {time.time() - started:.0f} s")
    return zc, zf, epochs


def _student(recipe: Recipe, sp: Split, labels: LabelSet, texts: list[str], soft, args, log):
    """The shipped recipe (train.py) on sp.fit, distilled from `soft` (the
    fold's teacher logits by text); logits after the int8 round trip."""
    from demos.questions import teacher, wordpiece
    from demos.questions.classify import pad
    from demos.questions.train import TrainConfig, as_shipped, encode, labelled, train_student, unlabelled

    tokenizer = wordpiece.build(args.vocab)
    pieces = wordpiece.pieces(tokenizer)
    if recipe.vocab:  # counted on the fold's training part only
        counts: dict[str, int] = defaultdict(int)
        for enc in tokenizer.encode_batch([normalize(e.text) for e in sp.fit]):
            for piece in enc.tokens:
                counts[piece] += 1
        with tempfile.TemporaryDirectory() as tmp:
            smaller = Path(tmp) / "vocab.txt"
            smaller.write_text("".join(p + "\n" for p in wordpiece.trim(pieces, counts, recipe.vocab)),
                               encoding="utf-8")
            tokenizer = wordpiece.build(smaller)
        pieces = wordpiece.pieces(tokenizer)
    cfg = teacher.minilm_config(vocab_size=len(pieces), n_coarse=len(labels.coarse), n_fine=len(labels.fine),
                                max_len=64, layers=recipe.layers)
    init = teacher.student_state(pieces, cfg, log=log)
    tc = TrainConfig(epochs=recipe.epochs, lr=recipe.lr, seed=args.seed, distill=recipe.distill,
                     temperature=recipe.temperature)
    fit_texts = [normalize(e.text) for e in sp.fit]
    aug = [t for _, t in teacher.augment(fit_texts, args.augment, args.seed)]
    rows = labelled(tokenizer, sp.fit, labels, cfg.max_len) + unlabelled(tokenizer, aug, cfg.max_len)
    targets = (torch.stack([soft[t][0] for t in fit_texts + aug]), torch.stack([soft[t][1] for t in fit_texts + aug]))
    net = as_shipped(train_student(cfg, tc, rows, init, targets, log=log))
    with torch.inference_mode():
        zc, zf = net(pad(encode(tokenizer, texts, cfg.max_len)))
    return zc, zf


def recipe_for(name: str, args) -> Recipe:
    """The recipe as this run uses it (--epochs overrides the recipe asked for)."""
    recipe = RECIPES[name]
    return replace(recipe, epochs=args.epochs) if args.epochs and name == args.recipe else recipe


def fold_cache(name: str, fold: int, examples: list[Example], args) -> Path:
    """Where one recipe's logits for one fold are kept: keyed by everything they depend on."""
    recipe = recipe_for(name, args)
    assert recipe.kind != "ensemble", "an ensemble is computed from its members' caches"
    data_key = hashlib.sha1(json.dumps([[e.fine, e.text] for e in examples]).encode()).hexdigest()[:10]
    student_labels = recipe.kind != "student" and not args.no_student_labels
    key = (f"{name}-k{args.k}-f{fold}-s{args.seed}-c{args.calib_frac}-e{recipe.epochs}-lr{recipe.lr}"
           f"-h{recipe.head_scale}{'-a' + str(args.augment) if student_labels else ''}-{data_key}")
    return args.cache / f"{key}.safetensors"


def is_cached(name: str, fold: int, examples: list[Example], args) -> bool:
    recipe = RECIPES[name]
    if recipe.kind == "ensemble":
        return all(is_cached(m, fold, examples, args) for m in recipe.members)
    return fold_cache(name, fold, examples, args).is_file()


def markdown_table(reports: list[dict]) -> str:
    """One row per recipe from its `<recipe>.json`: the folds it covers, then
    mean (min-max) of each figure, so a card or docs/benchmarks.md can carry the
    table exactly as `--table` prints it."""
    rows = ["| recipe | folds | coarse | fine | ECE fine, after T | unsure: share, right | sure: right |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in reports:
        s = r["summary"]

        def cell(name: str, pct: bool = True) -> str:
            f = s[name]
            if pct:
                return f"{f['mean'] * 100:.1f} % ({f['min'] * 100:.1f}-{f['max'] * 100:.1f})"
            return f"{f['mean']:.3f} ({f['min']:.3f}-{f['max']:.3f})"

        folds = ",".join(str(f["fold"]) for f in r["folds"])
        rows.append(f"| {r['recipe']} | {folds} of {r['k']} | {cell('coarse')} | {cell('fine')} | "
                    f"{cell('ece_fine_scaled', pct=False)} | {s['unsure_share']['mean'] * 100:.0f} %, "
                    f"{s['unsure_accuracy']['mean'] * 100:.0f} % | {s['sure_accuracy']['mean'] * 100:.0f} % |")
    return "\n".join(rows)


def run_fold(name: str, fold: int, examples: list[Example], labels: LabelSet, args, log=print):
    """(logits by text, seconds, epoch seconds) for one recipe on one fold, from the cache if there."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from demos.questions import teacher as T

    recipe = recipe_for(name, args)
    sp = split(examples, fold, args.k, args.seed, args.calib_frac)
    if recipe.kind == "ensemble":  # seconds: its members', which it needs; nothing of its own to keep
        runs = [run_fold(m, fold, examples, labels, args, log) for m in recipe.members]
        shared = set.intersection(*(set(logits) for logits, *_ in runs))
        both = {t: tuple(ensemble_logits([logits[t][head] for logits, *_ in runs]) for head in (0, 1))
                for t in shared}
        return both, sum(r[1] for r in runs), [s for r in runs for s in r[2]], sp
    student_labels = recipe.kind != "student" and not args.no_student_labels
    cache = fold_cache(name, fold, examples, args)
    texts = list(dict.fromkeys(normalize(e.text) for e in sp.test + sp.calib))
    if student_labels:  # a teacher also labels what its fold's student trains on
        fit_texts = [normalize(e.text) for e in sp.fit]
        texts = list(dict.fromkeys(texts + fit_texts + [t for _, t in T.augment(fit_texts, args.augment, args.seed)]))
    if cache.is_file():
        log(f"{name} fold {fold}: from cache {cache.name}")
        with safe_open(str(cache), "pt") as f:
            zc, zf, meta = f.get_tensor("coarse"), f.get_tensor("fine"), f.metadata()
        cached = json.loads(meta["texts"])
        return ({t: (zc[i], zf[i]) for i, t in enumerate(cached)}, float(meta["seconds"]),
                json.loads(meta["epoch_seconds"]), sp)
    log(f"{name} fold {fold}: training on {len(sp.fit)}, temperatures on {len(sp.calib)}, scoring {len(sp.test)}")
    started = time.time()
    if recipe.kind == "student":
        if args.no_student_labels:
            raise SystemExit("error: a student needs its teacher's labels: drop --no-student-labels")
        soft, _, _, _ = run_fold(recipe.teacher, fold, examples, labels, args, log)
        epochs: list[float] = []
        zc, zf = _student(recipe, sp, labels, texts, soft, args, log)
    else:
        zc, zf, epochs = _teacher(recipe, sp, labels, texts, args.seed, log)
    seconds = time.time() - started
    args.cache.mkdir(parents=True, exist_ok=True)
    save_file({"coarse": zc.contiguous(), "fine": zf.contiguous()}, str(cache),
              metadata={"texts": json.dumps(texts), "seconds": f"{seconds:.1f}", "epoch_seconds": json.dumps(epochs)})
    return {t: (zc[i], zf[i]) for i, t in enumerate(texts)}, seconds, epochs, sp


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", choices=sorted(RECIPES))
    p.add_argument("--folds", default=None,
                   help="comma-separated fold numbers to run, or 'cached': those already computed (default: all)")
    p.add_argument("--table", action="store_true",
                   help="print the markdown table of every recipe's <out>/<recipe>.json and stop")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (to fit a budget)")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--calib-frac", type=float, default=0.1, help="share of the training part kept for temperatures")
    p.add_argument("--augment", type=int, default=2, help="teacher-labelled perturbed copies per question")
    p.add_argument("--no-student-labels", action="store_true",
                   help="a teacher labels only the scored fold and the temperature slice (no student can use it)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--vocab", type=Path, default=DEFAULT_VOCAB, help="the student's WordPiece vocabulary")
    p.add_argument("--cache", type=Path, default=CACHE)
    p.add_argument("--out", type=Path, default=CACHE)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if args.table:
        reports = [json.loads((args.out / f"{name}.json").read_text()) for name in RECIPES
                   if (args.out / f"{name}.json").is_file()]
        if not reports:
            raise SystemExit(f"error: no <recipe>.json under {args.out}: run --recipe NAME first")
        print(markdown_table(reports))
        return 0
    if not args.recipe:
        p.error("--recipe is required (or --table)")
    if not args.data.is_file():
        raise SystemExit(f"error: no TREC file at {args.data}: pass --data PATH (train_5500.label)")
    torch.set_num_threads(args.threads)
    examples = read_examples(args.data)
    labels = LabelSet.from_examples(examples)
    if args.folds == "cached":
        folds = [f for f in range(args.k) if is_cached(args.recipe, f, examples, args)]
        if not folds:
            raise SystemExit(f"error: no fold of {args.recipe} is cached under {args.cache}")
    else:
        folds = [int(f) for f in args.folds.split(",")] if args.folds else list(range(args.k))
    if not all(0 <= f < args.k for f in folds):
        raise SystemExit(f"error: --folds must be numbers from 0 to {args.k - 1}")
    results, lines = [], {}
    for fold in folds:
        logits, seconds, epochs, sp = run_fold(args.recipe, fold, examples, labels, args)
        r = score_fold(args.recipe, fold, labels, sp.test, sp.calib, logits, seconds, epochs)
        results.append(r)
        print(f"{args.recipe} fold {fold}: coarse {r.coarse:.4f} (mixed {r.coarse_mixed:.4f}) fine {r.fine:.4f}; "
              f"ECE fine {r.ece_fine:.4f} -> {r.ece_fine_scaled:.4f} (T={r.temperature_fine}), coarse "
              f"{r.ece_coarse:.4f} -> {r.ece_coarse_scaled:.4f} (T={r.temperature_coarse}); unsure "
              f"{r.unsure_share:.1%} of answers, right {r.unsure_accuracy:.1%} of the time (the rest "
              f"{r.sure_accuracy:.1%}); {r.seconds:.0f} s, "
              f"epochs {r.epoch_seconds} s", flush=True)
        lines.update(zip((id(e) for e in sp.test), trec_lines(sp.test, logits, labels)))
    args.out.mkdir(parents=True, exist_ok=True)
    oof = args.out / f"{args.recipe}.oof.label"
    oof.write_text("".join(lines[id(e)] + "\n" for e in examples if id(e) in lines), encoding="latin-1")
    settings = asdict(RECIPES[args.recipe]) | ({"epochs": args.epochs} if args.epochs else {})
    report = {"recipe": args.recipe, "recipe_settings": settings, "k": args.k, "seed": args.seed,
              "calib_frac": args.calib_frac, "folds": [asdict(r) for r in results], "summary": summary(results)}
    (args.out / f"{args.recipe}.json").write_text(json.dumps(report, indent=1) + "\n")
    s = report["summary"]
    print(f"{args.recipe} over folds {folds}: coarse {s['coarse']['mean']:.4f} ({s['coarse']['min']:.4f}-"
          f"{s['coarse']['max']:.4f}), fine {s['fine']['mean']:.4f} ({s['fine']['min']:.4f}-{s['fine']['max']:.4f}); "
          f"wrote {oof} and {args.recipe}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
