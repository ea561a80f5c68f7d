"""Durian demo: hostile and unusual uploads give a clear error or a valid
prediction, and the same loaded model keeps serving afterwards."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from support import DURIAN_PHOTO
from test_durian_model import write_tiny_folder

from demohub.errors import InputError
from demos.durian import runtime

PHOTO = DURIAN_PHOTO


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return runtime.load(write_tiny_folder(tmp_path_factory.mktemp("durian") / "m"))


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header for a huge image with almost no data (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def assert_serves(model) -> None:
    result = runtime.predict(model, {"image": str(PHOTO)})
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("name, content, message", [
    ("corrupt.jpg", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "not an image"),
    ("notes.jpg", b"durian tasting notes: creamy, bitter, sweet\n" * 20, "not an image"),
    ("empty.jpg", b"", "empty"),
    ("bomb.png", png_claiming(30000, 30000), "megapixels"),
])
def test_bad_files_give_clear_errors(model, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        runtime.predict(model, {"image": str(path)})
    assert_serves(model)


def test_truncated_jpeg_is_reported_not_crashed(model, tmp_path):
    path = tmp_path / "truncated.jpg"
    path.write_bytes(PHOTO.read_bytes()[: PHOTO.stat().st_size // 3])
    with pytest.raises(InputError, match="corrupt or truncated"):
        runtime.predict(model, {"image": str(path)})
    assert_serves(model)


def test_missing_image_in_request(model):
    with pytest.raises(InputError, match="no image"):
        runtime.predict(model, {})
    with pytest.raises(InputError, match="could not be read"):
        runtime.predict(model, {"image": "/nonexistent/photo.jpg"})


@pytest.mark.parametrize("mode, suffix", [("RGBA", ".png"), ("L", ".jpg"), ("CMYK", ".jpg"), ("P", ".png"),
                                          ("I;16", ".png")])
def test_other_colour_modes_are_converted(model, tmp_path, mode, suffix):
    photo = Image.open(PHOTO)
    photo.draft("RGB", (300, 300))
    path = tmp_path / f"photo{suffix}"
    photo.convert("RGB").convert(mode).save(path)
    result = runtime.predict(model, {"image": str(path)})
    assert result.heatmap.shape[2] == 3 and result.heatmap.dtype == np.uint8


def test_50_megapixel_jpeg_is_downscaled(model, tmp_path):
    path = tmp_path / "huge.jpg"
    Image.radial_gradient("L").resize((8660, 5774)).convert("RGB").save(path, quality=70)
    result = runtime.predict(model, {"image": str(path)})
    assert max(result.heatmap.shape[:2]) <= runtime.HEATMAP_MAX_SIDE
    assert result.heatmap.shape[1] > result.heatmap.shape[0]  # landscape kept


def test_no_retracing_and_no_memory_growth_over_200_predictions(model, tmp_path):
    import psutil

    path = tmp_path / "small.jpg"
    Image.open(PHOTO).resize((600, 400)).save(path)
    request = {"image": str(path)}
    for _ in range(20):
        runtime.predict(model, request)
    before = psutil.Process().memory_info().rss
    for _ in range(200):
        runtime.predict(model, request)
    growth = psutil.Process().memory_info().rss - before
    assert model.explain._module.explain.experimental_get_tracing_count() == 1
    assert growth < 16 * 2**20, f"RSS grew by {growth / 2**20:.1f} MB over 200 predictions"
