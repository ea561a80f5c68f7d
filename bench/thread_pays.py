"""Whether a second CPU thread pays for one call of a torch demo, measured in process.

The registry gives a call of a model whose calls average under
`Limits.threads_min_call_s` one thread even when it runs alone. This measures
what that choice trades, per demo: wall time and CPU time of one `predict`
with a one-thread torch pool against a pool of every core, the two alternated
in blocks of 30 calls so the machine's drift falls on both.

    .venv/bin/python bench/thread_pays.py                        # questions and cassava, 180 calls each
    .venv/bin/python bench/thread_pays.py --demos questions --calls 300

Uses `models/questions` and the cassava placeholder in `<cache-dir>/placeholders/`
(vs_baseline builds it); inputs are TREC questions and the shared cassava photos.
The same short spin a hub worker gets is set before torch is imported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("GOMP_SPINCOUNT", "10000")  # as demohub.backends.local.spawn.DEFAULT_SPIN_COUNT

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
BLOCK = 30


def requests_for(demo: str, n: int) -> list[dict]:
    if demo == "questions":
        lines = (DATA / "trec" / "train_5500.label").read_text(errors="replace").splitlines()
        return [{"text": line.split(" ", 1)[1]} for line in lines[:n]]
    photos = sorted((DATA / "images").glob("cassava_*.jpg"))
    return [{"image": str(photos[i % len(photos)])} for i in range(n)]


def model_dir(demo: str, cache_dir: Path) -> Path:
    return ROOT / "models" / "questions" if demo == "questions" else cache_dir / "placeholders" / demo


def measure(demo: str, calls: int, cache_dir: Path) -> dict[int, list[tuple[float, float]]]:
    """{threads: [(wall s, CPU s) per call]} for 1 thread and every core."""
    import importlib

    import torch

    runtime = importlib.import_module(f"demos.{demo}.runtime")
    model = runtime.load(model_dir(demo, cache_dir))
    cores = len(os.sched_getaffinity(0))
    reqs = requests_for(demo, calls)
    out: dict[int, list[tuple[float, float]]] = {1: [], cores: []}
    for block in range(-(-calls // BLOCK)):
        for threads in ((1, cores) if block % 2 == 0 else (cores, 1)):
            torch.set_num_threads(threads)
            runtime.predict(model, reqs[0])  # unmeasured: the pool just resized
            for request in reqs[block * BLOCK:(block + 1) * BLOCK]:
                wall, cpu = time.perf_counter(), time.process_time()
                runtime.predict(model, request)
                out[threads].append((time.perf_counter() - wall, time.process_time() - cpu))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demos", default="questions,cassava")
    parser.add_argument("--calls", type=int, default=180, help="measured calls per demo and thread count")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache")
    args = parser.parse_args(argv)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {len(os.sched_getaffinity(0))} cores, "
          f"load average {os.getloadavg()[0]:.2f}")
    print("| demo | threads | wall p50 (ms) | wall mean | CPU mean (ms) | wall / 1 thread | CPU / 1 thread |")
    print("|---|---|---|---|---|---|---|")
    for demo in args.demos.split(","):
        if not model_dir(demo, args.cache_dir).exists():
            print(f"| {demo} | – | no model at {model_dir(demo, args.cache_dir)} | | | | |")
            continue
        out = measure(demo, args.calls, args.cache_dir)
        one_wall = statistics.mean(w for w, _ in out[1])
        one_cpu = statistics.mean(c for _, c in out[1])
        for threads, rows in out.items():
            wall = [w * 1000 for w, _ in rows]
            cpu = statistics.mean(c for _, c in rows) * 1000
            print(f"| {demo} | {threads} | {statistics.median(wall):.1f} | {statistics.mean(wall):.1f} | {cpu:.1f} "
                  f"| {statistics.mean(wall) / 1000 / one_wall:.2f} | {cpu / 1000 / one_cpu:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
