"""Accuracy of a model folder on any TREC-format file (latin-1):

    python -m demos.questions.evaluate --data test.label [--model models/questions]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from demos.questions import folder
from demos.questions.labels import read_examples
from demos.questions.train import PROJECT_ROOT, evaluate, print_report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--model", type=Path, default=PROJECT_ROOT / "models" / "questions")
    p.add_argument("--per-class", action="store_true", help="also print per-class figures")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    report = evaluate(folder.load(args.model), read_examples(args.data))
    if args.per_class:
        print_report(report, f"{args.data.name}")
    print(f"coarse accuracy: {report.coarse_accuracy:.3f}")
    print(f"fine accuracy: {report.fine_accuracy:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
