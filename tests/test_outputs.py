"""Output files are complete however many visitors get the same answer (issue 32).

Gradio writes a generated image to a path named by the hash of its bytes, so
identical answers share one file; rewriting it in place truncated it while it
was being served to another visitor."""

from __future__ import annotations

import hashlib
import io
from collections import Counter
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demohub.web import outputs


def _photo(path: Path) -> Path:
    """A photo-like JPEG (smooth gradients and noise): the image demos' heatmap
    of it is a few hundred KB, long enough to be caught mid-stream."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:600, 0:800]
    rgb = np.stack([(x / 800 * 255), (y / 600 * 200), ((x + y) % 255)], axis=-1)
    rgb = np.clip(rgb + rng.normal(0, 25, rgb.shape), 0, 255).astype(np.uint8)
    Image.fromarray(rgb).save(path, quality=92)
    return path


def _short_reads(save, folder: Path, seconds: float = 1.0) -> tuple[int, int]:
    """Save one image again and again while another thread downloads it the way
    Starlette's FileResponse does (stat for Content-Length, then open and read);
    returns (downloads, downloads shorter than their Content-Length)."""
    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    path = Path(save(img, str(folder)))
    stop = threading.Event()
    counts = [0, 0]

    def download() -> None:
        while not stop.is_set():
            size = path.stat().st_size
            with open(path, "rb") as f:
                got = len(f.read())
            counts[0] += 1
            counts[1] += got != size

    reader = threading.Thread(target=download)
    reader.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and counts[1] == 0:
        save(img, str(folder))  # another visitor's identical answer
    stop.set()
    reader.join(5)
    return counts[0], counts[1]


def test_a_download_is_never_cut_short_by_the_same_answer_written_again(tmp_path):
    """The mechanism, without a server: Gradio's own writer truncates the file in
    place under a download; ours never changes a file once it can be read."""
    downloads, short = _short_reads(outputs.save_pil_to_cache, tmp_path / "ours")
    assert downloads > 50 and short == 0
    downloads, short = _short_reads(outputs.GRADIO_WRITERS["save_pil_to_cache"], tmp_path / "gradio")
    assert short > 0, "Gradio's writer no longer truncates in place: demohub/web/outputs.py may be dropped"


def test_publish_leaves_no_staging_file_when_the_write_fails(tmp_path):
    with pytest.raises(TypeError):
        outputs.publish(tmp_path / "x.bin", object())  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def image_hub(request, demo_hub):
    """The shared demo hub (templates, the default), or one with spawned workers."""
    if request.param == "template":
        yield demo_hub
        return
    from support import hub_cache, running_hub

    with running_hub("--only", "cassava", "--start-method", "spawn", "--per-client-queue", "0",
                     cache_dir=hub_cache()) as hub:
        yield hub


#: the files are written in the hub process whatever runs the model; spawned workers are
#: tried with one demo (their copies may start with other thread counts than forked ones)
HUBS_AND_DEMOS = [("template", "cassava"), ("template", "durian"), ("spawn", "cassava")]


@pytest.mark.parametrize("image_hub,demo", HUBS_AND_DEMOS, indirect=["image_hub"],
                         ids=[f"{h}-{d}" for h, d in HUBS_AND_DEMOS])
def test_sixteen_identical_requests_all_download_a_complete_heatmap(image_hub, demo, tmp_path):
    """16 visitors send the same photo at once through gradio_client: every
    heatmap they download is complete and decodes. (Copies of a model may run
    with different thread counts, so a heatmap can differ in its last bits; the
    test needs only that many visitors share one file, which they do.)"""
    from gradio_client import handle_file

    photo = handle_file(str(_photo(tmp_path / "same.jpg")))
    client = image_hub.client()
    jobs = [client.submit(photo, api_name=f"/{demo}") for _ in range(16)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda job: job.result(timeout=240), jobs))
    digests: Counter = Counter()
    for result in results:
        heatmap = Path(result[1])
        data = heatmap.read_bytes()
        with Image.open(io.BytesIO(data)) as decoded:
            decoded.load()  # a truncated file raises here
            assert decoded.size[0] > 100
        digests[hashlib.sha256(data).hexdigest()] += 1
    assert max(digests.values()) >= 8, f"few visitors shared a file: {sorted(digests.values())}"
    assert "shorter than Content-Length" not in image_hub.logs()
