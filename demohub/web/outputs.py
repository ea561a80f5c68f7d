"""Output files that are complete whenever they can be read.

Gradio (6.31) writes a generated image to a content-addressed path in its
cache (`processing_utils.save_pil_to_cache`: the folder is the hash of the
bytes) with `Path.write_bytes`, which truncates and rewrites the file in place.
Two visitors who get the same answer (everyone clicks the same example photo)
get the same path, so the second request's write can truncate the file while
Starlette is streaming it to the first: "Response content shorter than
Content-Length" in the log, and a broken download for the visitor.

Here those writers put the bytes under a temporary name in the same folder and
`os.replace` them into place, as Gradio's own `save_file_to_cache` already
does; a path that already exists holds the same bytes (the name is their hash),
so it is only touched (the temp-folder sweeper ages files by ctime) and not
written again. A file being served is never rewritten.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from gradio import processing_utils

#: Gradio's own writers, kept so a test can show the race they have.
GRADIO_WRITERS = {
    "save_pil_to_cache": processing_utils.save_pil_to_cache,
    "save_bytes_to_cache": processing_utils.save_bytes_to_cache,
}


def publish(path: Path, data: bytes) -> str:
    """Make `path` hold `data`, never exposing a partly written file; returns
    the resolved path. `path`'s folder must exist."""
    path = path.resolve()
    if path.exists():
        try:
            os.utime(path)  # handed out again: the sweeper counts its age from now
        except OSError:
            pass
        return str(path)
    fd, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return str(path)


def save_pil_to_cache(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """`processing_utils.save_pil_to_cache`, written atomically."""
    data = processing_utils.encode_pil_to_bytes(img, format)
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(exist_ok=True, parents=True)
    return publish(folder / f"{name}.{format}", data)


def save_bytes_to_cache(data: bytes, file_name: str, cache_dir: str) -> str:
    """`processing_utils.save_bytes_to_cache`, written atomically."""
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(exist_ok=True, parents=True)
    if not Path(file_name).suffix:
        file_name += processing_utils.detect_audio_format(data)
    return publish(folder / Path(file_name).name, data)


def install() -> None:
    """Route Gradio's cache writers through the atomic ones. Every caller in
    Gradio looks them up on the module (`processing_utils.save_pil_to_cache(...)`,
    and `save_img_array_to_cache` by its module global), so this reaches them all."""
    processing_utils.save_pil_to_cache = save_pil_to_cache
    processing_utils.save_bytes_to_cache = save_bytes_to_cache


def installed() -> bool:
    return processing_utils.save_pil_to_cache is save_pil_to_cache
