"""Photo -> model input, driven by the model folder's config.json.

Pure numpy and PIL, so it is tested without TensorFlow and the same rule is
used for training, serving and benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class Preprocessing:
    """Resize to (height, width), then `pixel * scale + offset`.

    The default scale 1/255 maps pixels to [0, 1], as the model was trained.
    """

    height: int = 224
    width: int = 224
    scale: float = 1 / 255
    offset: float = 0.0
    resample: str = "bilinear"

    @classmethod
    def from_config(cls, config: dict) -> "Preprocessing":
        prep = config.get("preprocessing", {})
        height, width = prep.get("size", (cls.height, cls.width))
        resample = prep.get("resample", cls.resample)
        if resample not in _RESAMPLE:
            raise ValueError(f"preprocessing.resample must be one of {sorted(_RESAMPLE)}, got {resample!r}")
        return cls(height=int(height), width=int(width), scale=float(prep.get("scale", cls.scale)),
                   offset=float(prep.get("offset", cls.offset)), resample=resample)

    def to_config(self) -> dict:
        return {"size": [self.height, self.width], "scale": self.scale, "offset": self.offset,
                "resample": self.resample}

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, 3)


def to_batch(image: Image.Image, prep: Preprocessing) -> np.ndarray:
    """An RGB image as a float32 batch of one, shape (1, height, width, 3)."""
    resized = image.convert("RGB").resize((prep.width, prep.height), _RESAMPLE[prep.resample])
    pixels = np.asarray(resized, dtype=np.float32)
    return (pixels * np.float32(prep.scale) + np.float32(prep.offset))[None, ...]
