"""Find labelled photos for training: the Kaggle layout (train.csv with
image_id,label + train_images/) or one folder per class. Pure file logic."""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

from demos.cassava.labels import DISEASES, Disease

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


def class_index(folder_name: str, diseases: tuple[Disease, ...] = DISEASES) -> int | None:
    """'CMD', 'cmd', 'Cassava Mosaic Disease', 'cassava_mosaic_disease' or '3' -> 3."""
    key = folder_name.strip().lower().replace("_", " ").replace("-", " ")
    if key.isdigit() and int(key) < len(diseases):
        return int(key)
    for i, d in enumerate(diseases):
        if key in (d.code.lower(), d.name.lower()):
            return i
    return None


def kaggle_samples(root: Path) -> list[Sample]:
    samples = []
    with open(root / "train.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            label = int(row["label"])
            if not 0 <= label < len(DISEASES):
                raise ValueError(f"train.csv: label {label} for {row['image_id']} is not in 0-{len(DISEASES) - 1}")
            samples.append(Sample(root / "train_images" / row["image_id"], label))
    return samples


def folder_samples(root: Path) -> list[Sample]:
    samples = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        index = class_index(sub.name)
        if index is None:
            raise ValueError(f"folder {sub.name!r} is not a class; name folders by code (CBB, CBSD, CGM, "
                             "CMD, Healthy), full name or label number")
        samples += [Sample(p, index) for p in sorted(sub.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    return samples


def find_samples(root: Path) -> list[Sample]:
    root = Path(root)
    samples = kaggle_samples(root) if (root / "train.csv").is_file() else folder_samples(root)
    if not samples:
        raise ValueError(f"no labelled images under {root}")
    return samples


def split(samples: list[Sample], val_fraction: float, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Per-class holdout, so every class with >= 2 photos appears in validation."""
    rng = random.Random(seed)
    train, val = [], []
    for label in sorted({s.label for s in samples}):
        group = [s for s in samples if s.label == label]
        rng.shuffle(group)
        n_val = round(len(group) * val_fraction) if len(group) > 1 else 0
        n_val = max(n_val, 1) if len(group) > 1 and val_fraction > 0 else n_val
        val += group[:n_val]
        train += group[n_val:]
    return train, val
