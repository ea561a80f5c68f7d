"""The heatmap shown to the user: the part of the photo the model saw
(the centre crop), with the Grad-CAM map over it. No torch."""

from __future__ import annotations

import numpy as np
from PIL import Image

from demohub.kit import heatmap
from demos.cassava.preprocess import Preprocessing, crop_box

MAX_SIDE = 768


def heatmap_image(image: Image.Image, cam: np.ndarray, prep: Preprocessing, max_side: int = MAX_SIDE) -> np.ndarray:
    """uint8 HxWx3, longest side <= max_side."""
    seen = image.crop(crop_box(image.size, prep))
    if max(seen.size) > max_side:
        seen.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return heatmap.overlay(seen, cam)


def peak_in_image(cam: np.ndarray, size: tuple[int, int]) -> tuple[float, float]:
    """The map's peak as (x, y) in an image of `size` (w, h) covering the map,
    at the centre of the peak cell."""
    row, col = heatmap.peak(cam)
    h, w = np.shape(cam)
    return (col + 0.5) * size[0] / w, (row + 0.5) * size[1] / h
