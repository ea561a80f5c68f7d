"""Photos a grower might upload, good and bad, through the cassava runtime
(which decodes with demohub.kit.images.load_image inside the worker)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import pytest
from PIL import Image

from demohub.errors import InputError
from demos.cassava import card, folder, model, runtime
from demos.cassava.preprocess import Preprocessing
from support import CASSAVA_PHOTOS, PROJECT_ROOT

PHOTOS = CASSAVA_PHOTOS


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-model")
    config = card.make_config(trained=True, architecture="tiny_cnn", prep=Preprocessing(resize=72, crop_size=64))
    folder.save(model.build("tiny_cnn", 5), out, config, "test")
    return runtime.load(out)


@pytest.fixture
def private_tmp(monkeypatch, tmp_path):
    """Point tempfile at an empty folder, to see whether anything is written."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setenv("TMPDIR", str(tmp))
    return tmp


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def halves(size=(40, 20), left=(255, 0, 0), right=(0, 0, 255)) -> Image.Image:
    w, h = size
    pixels = np.zeros((h, w, 3), np.uint8)
    pixels[:, : w // 2] = left
    pixels[:, w // 2:] = right
    return Image.fromarray(pixels)


def test_real_photos(tiny, private_tmp):
    for photo in PHOTOS:
        result = runtime.predict(tiny, {"image": str(photo)})
        assert result.label and max(result.heatmap.shape[:2]) <= 768
    assert list(private_tmp.iterdir()) == []


def make_good(path, kind: str):
    base = halves((64, 48))
    if kind == "rgba.png":
        rgba = base.convert("RGBA")
        rgba.putalpha(128)
        rgba.save(path)
    elif kind == "gray.png":
        base.convert("L").save(path)
    elif kind == "palette.png":
        base.convert("P", palette=Image.Palette.ADAPTIVE, colors=8).save(path, transparency=0)
    elif kind == "sixteen.png":
        Image.fromarray((np.arange(64 * 48).reshape(48, 64) * 20).astype(np.uint16)).save(path)
    elif kind == "cmyk.jpg":
        Image.new("CMYK", (64, 48), (0, 255, 255, 0)).save(path, quality=95)
    elif kind == "photo.webp":
        base.save(path, "WEBP")
    elif kind == "photo.jpg":
        base.save(path, quality=90)
    return str(path)


@pytest.mark.parametrize("kind", ["rgba.png", "gray.png", "palette.png", "sixteen.png", "cmyk.jpg",
                                  "photo.webp", "photo.jpg"])
def test_formats_and_modes_are_converted(tiny, tmp_path, kind):
    path = make_good(tmp_path / kind, kind)
    result = runtime.predict(tiny, {"image": path})
    assert result.heatmap.shape[2] == 3
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-6)


def test_cmyk_colours_survive(tmp_path):
    from demohub.kit.images import load_image

    im = load_image(make_good(tmp_path / "c.jpg", "cmyk.jpg"))
    r, g, b = np.asarray(im).reshape(-1, 3).mean(0)
    assert im.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_exif_orientation_is_applied(tiny, tmp_path):
    from demohub.kit.images import load_image

    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    path = tmp_path / "rotated.jpg"
    halves((40, 20)).save(path, exif=exif.tobytes(), quality=95)
    im = load_image(path)
    assert im.size == (20, 40)
    pixels = np.asarray(im).astype(int)
    assert pixels[:15, :, 0].mean() > 200 and pixels[25:, :, 2].mean() > 200  # red on top, blue below
    runtime.predict(tiny, {"image": str(path)})


@pytest.fixture(scope="module")
def fifty_megapixels(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "fifty.jpg"
    halves((8660, 5774), (40, 160, 40), (200, 200, 60)).save(path, quality=60)
    return path


def test_fifty_megapixel_photo_is_downscaled(tiny, fifty_megapixels, private_tmp):
    result = runtime.predict(tiny, {"image": str(fifty_megapixels)})
    assert max(result.heatmap.shape[:2]) <= 768
    assert list(private_tmp.iterdir()) == []


def test_fifty_megapixel_decode_stays_small(fifty_megapixels):
    """A full decode needs 150 MB; the draft decode must not come close."""
    script = (
        "import json, resource, sys\n"
        "from demohub.kit.images import load_image\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "im = load_image(sys.argv[1])\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'size': im.size, 'grew_kb': after - before}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(fifty_megapixels)], cwd=PROJECT_ROOT,
                         capture_output=True, text=True, check=True, timeout=60)
    report = json.loads(out.stdout)
    assert max(report["size"]) <= 1024
    assert report["grew_kb"] < 40 * 1024, report


def make_bad(path, kind: str):
    if kind == "corrupt.jpg":
        path.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(3000))
    elif kind == "truncated.jpg":
        buf = path.with_suffix(".full.jpg")
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(buf)
        path.write_bytes(buf.read_bytes()[: buf.stat().st_size // 2])
        buf.unlink()
    elif kind == "bomb.png":
        path.write_bytes(png_header(30000, 30000))
    elif kind == "text.jpg":
        path.write_text("this is not a photo of a leaf\n" * 20)
    elif kind == "empty.jpg":
        path.write_bytes(b"")
    elif kind == "anim.gif":
        halves().save(path, "GIF")
    return str(path)


@pytest.mark.parametrize("kind, message", [
    ("corrupt.jpg", r"corrupt|not an image"),
    ("truncated.jpg", r"corrupt or truncated"),
    ("bomb.png", r"too many pixels.*decompression bomb"),
    ("text.jpg", r"not an image we can read"),
    ("empty.jpg", r"empty"),
    ("anim.gif", r"GIF files are not supported"),
])
def test_bad_files_give_a_clear_input_error(tiny, tmp_path, private_tmp, kind, message):
    path = make_bad(tmp_path / kind, kind)
    with pytest.raises(InputError, match=message):
        runtime.predict(tiny, {"image": path})
    assert list(private_tmp.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([kind, "tmp"])


def test_missing_image_in_request(tiny):
    with pytest.raises(InputError, match="upload a photo"):
        runtime.predict(tiny, {})
    with pytest.raises(InputError, match="could not be read"):
        runtime.predict(tiny, {"image": "/nonexistent/leaf.jpg"})
