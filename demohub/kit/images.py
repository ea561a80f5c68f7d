"""Turn an uploaded file into a modest RGB image, or a clear `InputError`.

Runs inside the worker, so a huge or hostile file costs the worker, never the
hub. JPEGs are decoded at reduced scale (`Image.draft`), so a 50-megapixel
photo never materialises at full size. Extreme aspect ratios are padded to
something a resize-and-crop model can use (`fit_aspect`).
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

from PIL import Image, ImageOps, ImageStat, UnidentifiedImageError

from demohub.errors import InputError

ALLOWED_FORMATS = {"JPEG", "MPO", "PNG", "WEBP"}
MAX_FILE_BYTES = 50 * 2**20
#: Images above this many pixels are refused before decoding (decompression bombs).
MAX_PIXELS = 120_000_000
#: The longest side we keep; models want 224-512 pixels, heatmaps look fine at this size.
MAX_SIDE = 1024
#: Longest side / shortest side beyond which the image is padded: models resize and
#: centre-crop, so a 60000x1 strip would otherwise shrink to a zero-pixel crop.
MAX_ASPECT = 4.0
#: Below this longest side there is nothing for a model to see.
MIN_SIDE = 16


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


def fit_aspect(im: Image.Image, max_aspect: float = MAX_ASPECT) -> Image.Image:
    """Pad a very long or very tall image with its mean colour, centred, until
    longest / shortest <= max_aspect; other images are returned unchanged.

    Padding (not cropping) keeps every pixel the person sent, and a mean-colour
    border adds no edges for the model to react to.
    """
    width, height = im.size
    long, short = max(width, height), min(width, height)
    if short * max_aspect >= long:
        return im
    short = math.ceil(long / max_aspect)
    size = (width, short) if width >= height else (short, height)
    fill = tuple(round(v) for v in ImageStat.Stat(im).mean[:3])
    canvas = Image.new("RGB", size, fill)
    canvas.paste(im, ((size[0] - width) // 2, (size[1] - height) // 2))
    return canvas


def draft_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """What to ask a JPEG decoder for so the photo comes out with its longest side
    just above `max_side`: the photo scaled down, aspect kept. PIL's `draft` only
    halves while *both* sides stay at or above the request, so asking for
    (max_side, max_side) left a 2400x1589 photo at full size."""
    width, height = size
    scale = max_side / max(width, height)
    if scale >= 1:
        return size
    return max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))


def load_image(path: str | os.PathLike, max_side: int = MAX_SIDE, max_pixels: int = MAX_PIXELS,
               max_bytes: int = MAX_FILE_BYTES) -> Image.Image:
    """Decode `path` into an upright RGB image whose longest side is <= max_side."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        raise InputError("The uploaded image could not be read; please upload it again.") from None
    if size == 0:
        raise InputError("The uploaded file is empty; upload a JPEG, PNG or WebP photo.")
    if size > max_bytes:
        raise InputError(f"The file is {size / 2**20:.0f} MB; the limit is {max_bytes / 2**20:.0f} MB.")
    try:
        with warnings.catch_warnings():
            # Our own max_pixels check below is the limit; PIL's warning (at 89 MP) is not.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.format not in ALLOWED_FORMATS:
                    raise InputError(f"{im.format or 'These'} files are not supported; upload a JPEG, PNG or WebP photo.")
                width, height = im.size
                if width * height > max_pixels:
                    raise InputError(
                        f"The image is {width}x{height} ({width * height / 1e6:.0f} megapixels); "
                        f"the limit is {max_pixels / 1e6:.0f} megapixels."
                    )
                if im.format in ("JPEG", "MPO"):
                    im.draft("RGB", draft_size(im.size, max_side))
                im.load()
                im = ImageOps.exif_transpose(im)
                im = _to_rgb(im)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(
            f"The image has too many pixels to decode safely (over {max_pixels / 1e6:.0f} "
            "megapixels; it may be a decompression bomb); upload a smaller photo."
        ) from None
    except UnidentifiedImageError:
        raise InputError("This file is not an image we can read; upload a JPEG, PNG or WebP photo.") from None
    except (OSError, SyntaxError, ValueError, EOFError):
        # The decoder's own words name internals (and sometimes a path): keep them out.
        raise InputError("The image is corrupt or truncated; upload the photo again.") from None
    if max(im.size) < MIN_SIDE:
        raise InputError(f"The image is only {im.size[0]}x{im.size[1]} pixels; upload a photo at least "
                         f"{MIN_SIDE} pixels across.")
    if max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return fit_aspect(im)
