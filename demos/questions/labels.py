"""TREC answer types: parsing the label file, readable names, and turning
probability vectors into the plain dicts the hub sends back.

Pure Python on purpose: the tab, the tests and the evaluator use it without
loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Readable names for the six coarse classes (Li & Roth 2002).
COARSE_NAMES: dict[str, str] = {
    "ABBR": "abbreviation",
    "DESC": "description or definition",
    "ENTY": "entity (thing)",
    "HUM": "human (person or group)",
    "LOC": "location",
    "NUM": "numeric value",
}


@dataclass(frozen=True)
class Example:
    """One labelled question: `fine` is the full label, e.g. "NUM:date"."""

    text: str
    fine: str

    @property
    def coarse(self) -> str:
        return coarse_of(self.fine)


def coarse_of(fine: str) -> str:
    """"NUM:date" -> "NUM"."""
    return fine.split(":", 1)[0]


def parse_line(line: str) -> Example:
    """Parse `COARSE:fine question text` (the TREC label format)."""
    label, sep, text = line.strip().partition(" ")
    if not sep or ":" not in label or not text.strip():
        raise ValueError(f"not a TREC label line: {line!r}")
    return Example(text=text.strip(), fine=label)


def read_examples(path: str | Path, limit: int | None = None) -> list[Example]:
    """Read a TREC label file (latin-1, one question per line)."""
    lines = Path(path).read_text(encoding="latin-1").splitlines()
    examples = [parse_line(line) for line in lines if line.strip()]
    return examples[:limit] if limit else examples


@dataclass(frozen=True)
class LabelSet:
    """The class order the model's heads were trained with."""

    coarse: tuple[str, ...]
    fine: tuple[str, ...]

    @classmethod
    def from_examples(cls, examples: list[Example]) -> "LabelSet":
        fine = tuple(sorted({e.fine for e in examples}))
        coarse = tuple(sorted({coarse_of(f) for f in fine} | set(COARSE_NAMES)))
        return cls(coarse=coarse, fine=fine)

    def fine_to_coarse(self) -> list[int]:
        """Index of each fine class's coarse class (to fold fine probs into coarse)."""
        return [self.coarse.index(coarse_of(f)) for f in self.fine]


def fold_fine(fine_probs: list[float], labels: LabelSet) -> list[float]:
    """Sum fine probabilities per coarse class: a coarse distribution that
    agrees with the fine head by construction."""
    out = [0.0] * len(labels.coarse)
    for p, c in zip(fine_probs, labels.fine_to_coarse()):
        out[c] += float(p)
    return out


def mix(a: list[float], b: list[float], weight_a: float) -> list[float]:
    """Convex combination of two distributions over the same classes."""
    return [weight_a * x + (1.0 - weight_a) * y for x, y in zip(a, b)]


def top(probs: list[float], names: tuple[str, ...], k: int | None = None) -> dict[str, float]:
    """{label: probability}, most likely first, rounded for display/JSON."""
    order = sorted(range(len(names)), key=lambda i: -probs[i])[: k or len(names)]
    return {names[i]: round(float(probs[i]), 4) for i in order}


def argmax(probs: list[float]) -> int:
    return max(range(len(probs)), key=lambda i: probs[i])
