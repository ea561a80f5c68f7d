"""Turn an uploaded file into a modest RGB image, or a clear `InputError`.

Runs inside the worker, so a huge or hostile file costs the worker, never the
hub. JPEGs are decoded at reduced scale (`Image.draft`), so a 50-megapixel
photo never materialises at full size.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from demohub.errors import InputError

ALLOWED_FORMATS = {"JPEG", "MPO", "PNG", "WEBP"}
MAX_FILE_BYTES = 50 * 2**20
#: Images above this many pixels are refused before decoding (decompression bombs).
MAX_PIXELS = 120_000_000
#: The longest side we keep; models want 224-512 pixels, heatmaps look fine at this size.
MAX_SIDE = 1024


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        im = im.convert("F")
        lo, hi = im.getextrema()
        scale = 255.0 / (hi - lo) if hi > lo else 1.0
        im = im.point(lambda v: (v - lo) * scale).convert("L")
    return im.convert("RGB")


def load_image(path: str | os.PathLike, max_side: int = MAX_SIDE, max_pixels: int = MAX_PIXELS,
               max_bytes: int = MAX_FILE_BYTES) -> Image.Image:
    """Decode `path` into an upright RGB image whose longest side is <= max_side."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        raise InputError("the uploaded image could not be read; please upload it again") from None
    if size == 0:
        raise InputError("the uploaded file is empty")
    if size > max_bytes:
        raise InputError(f"the file is {size / 2**20:.0f} MB; the limit is {max_bytes / 2**20:.0f} MB")
    try:
        with warnings.catch_warnings():
            # Our own max_pixels check below is the limit; PIL's warning (at 89 MP) is not.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.format not in ALLOWED_FORMATS:
                    raise InputError(f"{im.format or 'this'} files are not supported; upload a JPEG, PNG or WebP photo")
                width, height = im.size
                if width * height > max_pixels:
                    raise InputError(
                        f"the image is {width}x{height} ({width * height / 1e6:.0f} megapixels); "
                        f"the limit is {max_pixels / 1e6:.0f} megapixels"
                    )
                if im.format in ("JPEG", "MPO"):
                    im.draft("RGB", (max_side, max_side))
                im.load()
                im = ImageOps.exif_transpose(im)
                im = _to_rgb(im)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(
            f"the image has too many pixels to decode safely (over {max_pixels / 1e6:.0f} "
            "megapixels; it may be a decompression bomb); upload a smaller photo"
        ) from None
    except UnidentifiedImageError:
        raise InputError("this file is not an image we can read; upload a JPEG, PNG or WebP photo") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"the image is corrupt or truncated ({exc}); upload the photo again") from None
    if max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return im
