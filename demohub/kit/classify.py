"""The result every image-classification demo returns, and the "uncertain"
rule, so cassava and durian answer in the same shape."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def softmax(logits) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Decision:
    label: str
    confidence: float
    uncertain: bool


def decide(probabilities, labels: list[str], threshold: float) -> Decision:
    """Top class, and whether it is below the model's confidence threshold."""
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.shape != (len(labels),):
        raise ValueError(f"{len(labels)} labels but probabilities of shape {probs.shape}")
    top = int(np.argmax(probs))
    return Decision(label=labels[top], confidence=float(probs[top]), uncertain=bool(probs[top] < threshold))


@dataclass(frozen=True)
class ImageClassification:
    """What the cassava and durian workers send back to the hub."""

    label: str
    confidence: float
    uncertain: bool
    threshold: float
    probabilities: dict[str, float]
    trained: bool
    heatmap: np.ndarray | None = None
    details: str = ""
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """The API's JSON summary (the heatmap travels as its own image output)."""
        return {
            "label": "uncertain" if self.uncertain else self.label,
            "top_class": self.label,
            "confidence": round(self.confidence, 4),
            "uncertain": self.uncertain,
            "threshold": self.threshold,
            "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
            "trained": self.trained,
            **self.extra,
        }


def build_result(probabilities, labels: list[str], threshold: float, trained: bool,
                 heatmap: np.ndarray | None = None, details: str = "", **extra) -> ImageClassification:
    decision = decide(probabilities, labels, threshold)
    return ImageClassification(
        label=decision.label,
        confidence=decision.confidence,
        uncertain=decision.uncertain,
        threshold=threshold,
        probabilities={lab: float(p) for lab, p in zip(labels, probabilities)},
        trained=trained,
        heatmap=heatmap,
        details=details,
        extra=extra,
    )
