"""Benchmark the durian demo: TensorFlow worker memory (idle, after 200
predictions, after eviction), cold load, latency through the hub vs in-process,
and what a bare `import tensorflow` costs. Uses the real default architecture
(untrained placeholder weights) on the real photo.

    .venv/bin/python bench/bench_durian.py [--predictions 200] [--write-docs]

Figures go to stdout as Markdown; `--write-docs` also replaces the `## durian`
section of docs/benchmarks.md (other sections are left as they are).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support import SHARED_DATA, mapped_framework_libs, start_hub  # noqa: E402

PHOTO = SHARED_DATA / "images" / "durian_1.jpg"
DOCS = ROOT / "docs" / "benchmarks.md"
MB = 2**20


# -- measurements in a child process (TensorFlow never enters the bench process) -------------

BARE_IMPORT = """
import json, os, psutil
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow
m = psutil.Process().memory_full_info()
print(json.dumps({"pss": m.pss, "rss": m.rss, "uss": m.uss}))
"""

IN_PROCESS = """
import json, os, sys, time, psutil
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
from demos.durian import runtime
t_import = time.perf_counter() - t0
t0 = time.perf_counter()
model = runtime.load({folder!r})
t_load = time.perf_counter() - t0
request = {{"image": {photo!r}}}
runtime.predict(model, request)
times = []
for _ in range({n}):
    t0 = time.perf_counter()
    runtime.predict(model, request)
    times.append(time.perf_counter() - t0)
m = psutil.Process().memory_full_info()
print(json.dumps({{"import_s": t_import, "load_s": t_load, "times": times, "pss": m.pss, "rss": m.rss}}))
"""

PLACEHOLDER = """
import sys
sys.path.insert(0, {root!r})
from pathlib import Path
from demos.durian import runtime
runtime.placeholder(Path({folder!r}))
"""


def run_child(code: str, threads: int) -> dict:
    env = {"TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": "1",
           "OMP_NUM_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**dict(__import__("os").environ), **env}, cwd=ROOT)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


# -- the hub -----------------------------------------------------------------------------------


def metric(text: str, name: str, **labels: str) -> float:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = "^" + re.escape(f"{name}{{{inner}}}" if labels else name) + r" (\S+)$"
    match = re.search(pattern, text, re.M)
    return float(match.group(1)) if match else float("nan")


def tree_memory(pid: int) -> tuple[int, int]:
    """(hub PSS, all workers' PSS) for the hub process and its children."""
    hub = psutil.Process(pid)
    workers = sum(c.memory_full_info().pss for c in hub.children(recursive=True))
    return hub.memory_full_info().pss, workers


def worker_memory(hub) -> dict[str, int]:
    pids = hub.worker_pids()
    if not pids:
        return {"pss": 0, "rss": 0}
    m = psutil.Process(pids[0]).memory_full_info()
    return {"pss": m.pss, "rss": m.rss}


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


@dataclass
class HubFigures:
    cold_first_request_s: float = 0.0
    worker_load_s: float = 0.0
    idle: dict | None = None
    after_20: dict | None = None
    after_n: dict | None = None
    latencies: list[float] | None = None
    worker_predict_s: float = 0.0
    tree_before: tuple[int, int] = (0, 0)
    tree_after: tuple[int, int] = (0, 0)
    metrics_workers_before: float = 0.0
    metrics_workers_after: float = 0.0
    eviction_wait_s: float = 0.0
    hub_framework_libs: tuple = ()


def bench_hub(folder: Path, n: int, threads: int, ttl: float) -> HubFigures:
    from gradio_client import handle_file

    f = HubFigures()
    hub = start_hub("--only", "durian", "--model", f"durian={folder}", "--idle-ttl", str(ttl),
                    "--worker-threads", str(threads))
    try:
        client = hub.client()
        photo = handle_file(str(PHOTO))
        t0 = time.perf_counter()
        client.predict(photo, api_name="/durian")
        f.cold_first_request_s = time.perf_counter() - t0
        _, text = hub.get("/metrics")
        f.worker_load_s = metric(text, "demohub_load_seconds_total", model="durian")
        time.sleep(2)
        f.idle = worker_memory(hub)
        f.latencies = []
        for i in range(n):
            t0 = time.perf_counter()
            client.predict(photo, api_name="/durian")
            f.latencies.append(time.perf_counter() - t0)
            if i + 1 == min(20, n):
                f.after_20 = worker_memory(hub)
        f.after_n = worker_memory(hub)
        _, text = hub.get("/metrics")
        f.worker_predict_s = (metric(text, "demohub_predict_seconds_total", model="durian")
                              / metric(text, "demohub_predictions_total", model="durian"))
        f.metrics_workers_before = metric(text, "demohub_workers_memory_bytes")
        f.tree_before = tree_memory(hub.pid)
        f.hub_framework_libs = tuple(sorted(mapped_framework_libs(hub.pid)))
        t0 = time.perf_counter()
        while hub.worker_pids() and time.perf_counter() - t0 < ttl + 30:
            time.sleep(0.5)
        f.eviction_wait_s = time.perf_counter() - t0
        time.sleep(1.5)
        _, text = hub.get("/metrics")
        f.metrics_workers_after = metric(text, "demohub_workers_memory_bytes")
        f.tree_after = tree_memory(hub.pid)
    finally:
        hub.stop()
    return f


# -- report -----------------------------------------------------------------------------------


def render(bare: dict, inproc: dict, hub: HubFigures, n: int, n_local: int, threads: int,
           placeholder_s: float) -> str:
    lat, local = hub.latencies, inproc["times"]
    cpu = platform.processor() or platform.machine()
    mem = lambda b: f"{b / MB:.0f} MB"  # noqa: E731
    growth_pss = hub.after_n["pss"] - hub.after_20["pss"]
    growth_rss = hub.after_n["rss"] - hub.after_20["rss"]
    hub_before, workers_before = hub.tree_before
    hub_after, workers_after = hub.tree_after
    return f"""## durian

Xception (22.9 M parameters, 224x224, untrained placeholder weights written by
`runtime.placeholder`) on `durian_1.jpg` (2400x1589 progressive JPEG); every
prediction includes the Grad-CAM gradient pass and the 768-px heatmap overlay.
{psutil.cpu_count()} CPUs ({cpu}), TensorFlow worker with {threads} intra-op / 1 inter-op
threads. Measured with `.venv/bin/python bench/bench_durian.py --predictions {n}`;
the machine was shared with other work, so latencies are indicative.

| memory (PSS unless noted) | value |
|---|---|
| bare `python -c "import tensorflow"` | {mem(bare['pss'])} (RSS {mem(bare['rss'])}) |
| durian worker, model loaded, idle | {mem(hub.idle['pss'])} (RSS {mem(hub.idle['rss'])}) |
| durian worker after {min(20, n) + 1} predictions | {mem(hub.after_20['pss'])} (RSS {mem(hub.after_20['rss'])}) |
| durian worker after {n + 1} predictions | {mem(hub.after_n['pss'])} (RSS {mem(hub.after_n['rss'])}) |
| growth from prediction {min(20, n) + 1} to {n + 1} | {growth_pss / MB:+.1f} MB PSS ({growth_rss / MB:+.1f} MB RSS) |
| hub process + workers, model loaded | {mem(hub_before)} + {mem(workers_before)} = {mem(hub_before + workers_before)} |
| hub process + workers, {hub.eviction_wait_s:.0f} s later (idle TTL evicted the model) | {mem(hub_after)} + {mem(workers_after)} = {mem(hub_after + workers_after)} |
| `/metrics` `demohub_workers_memory_bytes` before / after eviction | {mem(hub.metrics_workers_before)} / {mem(hub.metrics_workers_after)} |
| framework libraries mapped in the hub process | {', '.join(hub.hub_framework_libs) or 'none'} |

| time | value |
|---|---|
| writing the placeholder folder (build Xception + save 80 MB `.keras`) | {placeholder_s:.1f} s |
| cold load in the worker (import TF + load `.keras` + trace Grad-CAM function) | {hub.worker_load_s:.1f} s |
| first request through the hub (worker start + load + predict) | {hub.cold_first_request_s:.1f} s |
| in-process: `import demos.durian.runtime` / `runtime.load` | {inproc['import_s']:.1f} s / {inproc['load_s']:.1f} s |
| in-process `runtime.predict`, p50 / p95 ({n_local} runs) | {statistics.median(local) * 1000:.0f} / {percentile(local, 95) * 1000:.0f} ms |
| inside the worker (hub's `predict_seconds_total` / predictions) | {hub.worker_predict_s * 1000:.0f} ms mean |
| through the hub with `gradio_client`, p50 / p95 ({n} runs) | {statistics.median(lat) * 1000:.0f} / {percentile(lat, 95) * 1000:.0f} ms |

The hub adds upload, queueing, pickling the result (a ~1.2 MB heatmap array) and
encoding the heatmap image on top of the worker's own time.
"""


def write_section(section: str, path: Path = DOCS) -> None:
    """Replace (or append) only the `## durian` section."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(r"^## durian\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip() + "\n\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section.rstrip() + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--predictions", type=int, default=200)
    p.add_argument("--local-predictions", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--idle-ttl", type=float, default=15.0)
    p.add_argument("--write-docs", action="store_true")
    args = p.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="durian-bench-")) / "durian"
    folder.mkdir()
    t0 = time.perf_counter()
    run_child(PLACEHOLDER.format(root=str(ROOT), folder=str(folder)), args.threads)
    placeholder_s = time.perf_counter() - t0
    print(f"placeholder written in {placeholder_s:.1f} s", file=sys.stderr)
    bare = run_child(BARE_IMPORT, args.threads)
    print(f"bare import tensorflow: {bare['pss'] / MB:.0f} MB PSS", file=sys.stderr)
    inproc = run_child(IN_PROCESS.format(root=str(ROOT), folder=str(folder), photo=str(PHOTO),
                                         n=args.local_predictions), args.threads)
    print(f"in-process p50 {statistics.median(inproc['times']) * 1000:.0f} ms", file=sys.stderr)
    hub = bench_hub(folder, args.predictions, args.threads, args.idle_ttl)
    section = render(bare, inproc, hub, args.predictions, args.local_predictions, args.threads, placeholder_s)
    print(section)
    if args.write_docs:
        write_section(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
