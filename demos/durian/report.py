"""Validation figures for the model card: accuracy, per-breed recall and a
confusion matrix, from label indices. Pure numpy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Validation:
    labels: list[str]
    confusion: np.ndarray  # rows: true breed, columns: predicted breed
    loss: float

    @property
    def accuracy(self) -> float:
        total = self.confusion.sum()
        return float(np.trace(self.confusion) / total) if total else 0.0

    def recall(self) -> dict[str, float]:
        rows = self.confusion.sum(axis=1)
        return {lab: float(self.confusion[i, i] / rows[i]) if rows[i] else 0.0
                for i, lab in enumerate(self.labels)}


def confusion(true: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(true, dtype=int), np.asarray(predicted, dtype=int)), 1)
    return matrix


def markdown(v: Validation, epochs: int, pretrained: bool, stopped_early: bool) -> str:
    """The model card's '## Validation' section."""
    header = "| true \\ predicted | " + " | ".join(v.labels) + " |"
    rule = "|" + "---|" * (len(v.labels) + 1)
    rows = [f"| {lab} | " + " | ".join(str(n) for n in v.confusion[i]) + " |" for i, lab in enumerate(v.labels)]
    recalls = "\n".join(f"- {lab}: {r:.1%}" for lab, r in v.recall().items())
    start = "ImageNet weights" if pretrained else "random initialisation (no ImageNet weights)"
    return (
        "## Training\n\n"
        f"Started from {start}; {epochs} epochs"
        f"{' (early stopping restored the best epoch)' if stopped_early else ''}, with random flips, "
        "rotations and zooms.\n\n"
        "## Validation\n\n"
        f"- Validation accuracy: {v.accuracy:.1%} on {int(v.confusion.sum())} photos\n"
        f"- Validation loss: {v.loss:.4f}\n\n"
        f"Recall per breed:\n\n{recalls}\n\n"
        f"Confusion matrix:\n\n{header}\n{rule}\n" + "\n".join(rows) + "\n"
    )
