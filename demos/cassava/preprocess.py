"""Photo -> normalised CHW float array, driven by config.json's "preprocessing".

Mirrors torchvision's Resize(shorter side) + CenterCrop + Normalize, without
torch, so it is tested as plain functions and the same numbers reach both the
model and the heatmap (`crop_box` says which part of the photo the model saw).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    resize: int = 256          # shorter side after resizing
    crop_size: int = 224       # square centre crop fed to the model
    mean: tuple[float, ...] = field(default=IMAGENET_MEAN)
    std: tuple[float, ...] = field(default=IMAGENET_STD)

    def __post_init__(self):
        if self.crop_size > self.resize:
            raise ValueError(f"crop_size {self.crop_size} is larger than resize {self.resize}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need three values each, std > 0")

    @classmethod
    def from_config(cls, config: dict) -> "Preprocessing":
        p = config.get("preprocessing", {})
        return cls(resize=int(p.get("resize", 256)), crop_size=int(p.get("crop_size", 224)),
                   mean=tuple(p.get("mean", IMAGENET_MEAN)), std=tuple(p.get("std", IMAGENET_STD)))

    def to_config(self) -> dict:
        return {"resize": self.resize, "crop_size": self.crop_size,
                "mean": list(self.mean), "std": list(self.std), "interpolation": "bilinear"}


def resized_size(size: tuple[int, int], shorter: int) -> tuple[int, int]:
    """(width, height) with the shorter side scaled to `shorter`, aspect kept."""
    w, h = size
    if w <= h:
        return shorter, max(1, round(h * shorter / w))
    return max(1, round(w * shorter / h)), shorter


def center_box(size: tuple[int, int], crop: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a centred crop x crop square in a (w, h) image."""
    w, h = size
    left, top = (w - crop) // 2, (h - crop) // 2
    return left, top, left + crop, top + crop


def crop_box(size: tuple[int, int], prep: Preprocessing) -> tuple[int, int, int, int]:
    """The part of the original photo the model sees, in original pixels
    (a centred square, `crop_size / resize` of the shorter side)."""
    w, h = size
    side = prep.crop_size * min(w, h) / prep.resize
    left, top = (w - side) / 2, (h - side) / 2
    return round(left), round(top), round(left + side), round(top + side)


def normalize(pixels: np.ndarray, mean, std) -> np.ndarray:
    """uint8 HxWx3 -> float32 3xHxW, scaled to [0, 1] then standardised per channel."""
    x = pixels.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def prepare(image: Image.Image, prep: Preprocessing) -> np.ndarray:
    """An RGB photo -> the model's float32 3 x crop x crop input."""
    resized = image.convert("RGB").resize(resized_size(image.size, prep.resize), Image.Resampling.BILINEAR)
    pixels = np.asarray(resized.crop(center_box(resized.size, prep.crop_size)))
    return normalize(pixels, prep.mean, prep.std)
