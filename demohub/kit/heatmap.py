"""Draw a class-activation map over a photo.

The map comes from the model (Grad-CAM or CAM, any resolution); this module
only normalises it, scales it to the photo and colours it, so that the drawing
is tested without any model.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def normalize(cam: np.ndarray) -> np.ndarray:
    """Scale a 2-D map to [0, 1]; a flat map becomes all zeros."""
    cam = np.nan_to_num(np.asarray(cam, dtype=np.float32))
    if cam.ndim != 2:
        raise ValueError(f"a heatmap is 2-D, got shape {cam.shape}")
    cam = cam - cam.min()
    peak = cam.max()
    return cam / peak if peak > 0 else cam


def resize(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a [0, 1] map to (width, height)."""
    return np.asarray(Image.fromarray(cam.astype(np.float32), mode="F").resize(size, Image.Resampling.BILINEAR))


def colorize(cam: np.ndarray) -> np.ndarray:
    """A 'jet'-like colour map: blue (0) -> cyan -> yellow -> red (1), uint8 RGB."""
    x = np.clip(cam, 0.0, 1.0)[..., None]
    r = np.clip(1.5 - np.abs(4 * x - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * x - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * x - 1), 0, 1)
    return (np.concatenate([r, g, b], axis=-1) * 255).astype(np.uint8)


def overlay(image: Image.Image, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The photo with the coloured map blended over it, as a uint8 RGB array."""
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    heat = colorize(resize(normalize(cam), image.size)).astype(np.float32)
    return (base * (1 - alpha) + heat * alpha).round().astype(np.uint8)


def peak(cam: np.ndarray) -> tuple[int, int]:
    """(row, col) of the map's maximum: where the model looked hardest."""
    row, col = np.unravel_index(int(np.argmax(cam)), np.shape(cam))
    return int(row), int(col)
