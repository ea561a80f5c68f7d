"""The issue's reference baseline on our validation split, to read our figures
against the TREC test set we do not have.

A TF-IDF word (1-2) + char (2-5) n-gram linear SVM is quoted at 88.6% coarse /
82.4% fine on the 500-question test set. Trained on the same 90% and scored on
the same held-out 10% as `demos.questions.train`, it tells how much harder (or
easier) our split is than the test set.

    pip install -r requirements-train.txt   # scikit-learn
    python bench/questions_baseline.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from demos.questions.labels import read_examples  # noqa: E402
from demos.questions.train import DEFAULT_DATA, stratified_split  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--C", type=float, default=1.0)
    args = p.parse_args()

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_union
    from sklearn.svm import LinearSVC

    train, val = stratified_split(read_examples(args.data), 0.1, args.seed)
    vec = make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                     TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True))
    x_train = vec.fit_transform([e.text for e in train])
    x_val = vec.transform([e.text for e in val])
    for head in ("coarse", "fine"):
        clf = LinearSVC(C=args.C).fit(x_train, [getattr(e, head) for e in train])
        acc = (clf.predict(x_val) == [getattr(e, head) for e in val]).mean()
        print(f"TF-IDF word+char SVM, {head}: {acc:.3f} on the held-out 10% (n={len(val)}, seed {args.seed})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
