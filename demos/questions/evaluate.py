"""Accuracy of a model folder on any TREC-format file (latin-1), or of a
predictions file in the same format (e.g. `cv`'s out-of-fold predictions)
against the gold one:

    python -m demos.questions.evaluate --data test.label [--model models/questions]
    python -m demos.questions.evaluate --data train_5500.label --predictions mpnet-teacher.oof.label
"""

from __future__ import annotations

import argparse
from collections import defaultdict, deque
from pathlib import Path

import torch

from demos.questions import folder
from demos.questions.labels import Example, read_examples
from demos.questions.train import PROJECT_ROOT, evaluate, print_report


def score_predictions(gold: list[Example], predicted: list[Example]) -> tuple[float, float]:
    """(coarse, fine) accuracy of predicted labels against gold ones, matched by
    question text (a repeated question matches its repeats in order), so a
    predictions file may cover only part of the gold file (the folds run)."""
    by_text: dict[str, deque[Example]] = defaultdict(deque)
    for g in gold:
        by_text[g.text].append(g)
    coarse = fine = 0
    for p in predicted:
        if not by_text[p.text]:
            raise ValueError(f"a predicted question is not in the gold file (or more often than there): {p.text!r}")
        g = by_text[p.text].popleft()
        coarse += p.coarse == g.coarse
        fine += p.fine == g.fine
    if not predicted:
        raise ValueError("the predictions file has no questions")
    return coarse / len(predicted), fine / len(predicted)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--model", type=Path, default=PROJECT_ROOT / "models" / "questions")
    p.add_argument("--per-class", action="store_true", help="also print per-class figures")
    p.add_argument("--predictions", type=Path, default=None,
                   help="score this TREC-format file of predicted labels against --data (no model run)")
    args = p.parse_args(argv)
    if args.predictions:
        try:
            predicted = read_examples(args.predictions)
            coarse, fine = score_predictions(read_examples(args.data), predicted)
        except ValueError as e:
            raise SystemExit(f"error: {args.predictions}: {e}") from e
        print(f"{len(predicted)} predictions")
        print(f"coarse accuracy: {coarse:.4f}")
        print(f"fine accuracy: {fine:.4f}")
        return 0
    torch.set_num_threads(2)
    report = evaluate(folder.load(args.model), read_examples(args.data))
    if args.per_class:
        print_report(report, f"{args.data.name}")
    print(f"coarse accuracy: {report.coarse_accuracy:.3f}")
    print(f"fine accuracy: {report.fine_accuracy:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
