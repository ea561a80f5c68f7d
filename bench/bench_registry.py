"""Core figures: page-ready time, load time, memory returned on eviction, and
the cost of the worker hop on a warm call.

    .venv/bin/python bench/bench_registry.py [--calls 300]

Uses the numpy-only test demo so the figures measure the hub, not a model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "fixtures")]

import psutil  # noqa: E402

from demohub.backends import make_backend  # noqa: E402
from demohub.discovery import discover  # noqa: E402
from demohub.registry import Limits, Registry  # noqa: E402
from demohub.sources import ModelSources  # noqa: E402
from demohub.spec import ModelSource  # noqa: E402
from support import TEST_DEMOS, start_hub  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def total_pss(pid: int) -> int:
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    total = 0
    for proc in procs:
        try:
            total += proc.memory_full_info().pss
        except psutil.NoSuchProcess:
            pass
    return total


def page_ready() -> float:
    """Seconds from `python hub.py` (the real demos) to the page answering."""
    started = time.perf_counter()
    hub = start_hub(timeout=120)
    try:
        hub.get("/")
        return time.perf_counter() - started
    finally:
        hub.stop()


def eviction_memory(alloc_mb: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "alpha"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"alloc_mb": alloc_mb}))
        hub = start_hub("--demos-dir", str(TEST_DEMOS), "--models-dir", tmp, "--idle-ttl", "1")
        try:
            time.sleep(1)
            before = total_pss(hub.pid)
            hub.client().predict("{}", api_name="/alpha")
            loaded = total_pss(hub.pid)
            while hub.worker_pids():
                time.sleep(0.2)
            after = total_pss(hub.pid)
        finally:
            hub.stop()
    return before / 2**20, loaded / 2**20, after / 2**20


def warm_calls(calls: int) -> dict[str, list[float]]:
    sys.path.insert(0, str(TEST_DEMOS.parent))
    import testdemos.echo_runtime as runtime

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "alpha"
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        model = runtime.load(folder)
        request = {"value": "x" * 100}
        inproc = []
        for _ in range(calls):
            t = time.perf_counter()
            runtime.predict(model, request)
            inproc.append((time.perf_counter() - t) * 1000)

        specs = discover(TEST_DEMOS)
        sources = ModelSources(specs, Path(tmp), Path(tmp) / "p", {"alpha": ModelSource(local_dir=folder)})
        registry = Registry(specs, sources, Limits(), backend=make_backend("spawn"))
        load_started = time.perf_counter()
        registry.predict("alpha", request)
        load_s = time.perf_counter() - load_started
        hop = []
        for _ in range(calls):
            t = time.perf_counter()
            registry.predict("alpha", request)
            hop.append((time.perf_counter() - t) * 1000)
        registry.close()

        hub = start_hub("--demos-dir", str(TEST_DEMOS), "--model", f"alpha={folder}")
        try:
            client = hub.client()
            text = json.dumps(request)
            client.predict(text, api_name="/alpha")
            via_client = []
            for _ in range(min(calls, 50)):
                t = time.perf_counter()
                client.predict(text, api_name="/alpha")
                via_client.append((time.perf_counter() - t) * 1000)
            via_http = []
            for _ in range(min(calls, 100)):
                t = time.perf_counter()
                http_call(hub.url, "alpha", [text])
                via_http.append((time.perf_counter() - t) * 1000)
        finally:
            hub.stop()
    return {"in-process predict()": inproc, "registry (worker hop)": hop,
            "HTTP API -> hub": via_http, "gradio_client -> hub": via_client, "_load_s": [load_s]}


def http_call(base_url: str, api_name: str, data: list) -> str:
    """One call through Gradio's HTTP API (POST, then read the result stream)."""
    import urllib.request

    url = f"{base_url.rstrip('/')}/gradio_api/call/{api_name}"
    req = urllib.request.Request(url, data=json.dumps({"data": data}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        event_id = json.load(resp)["event_id"]
    with urllib.request.urlopen(f"{url}/{event_id}") as resp:
        return resp.read().decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--alloc-mb", type=int, default=256)
    args = parser.parse_args()

    print(f"page ready after start (real demos, no model loaded): {page_ready():.2f} s")
    before, loaded, after = eviction_memory(args.alloc_mb)
    print(f"eviction ({args.alloc_mb} MB model), hub total PSS: before {before:.0f} MiB, "
          f"loaded {loaded:.0f} MiB, after eviction {after:.0f} MiB "
          f"(returned {loaded - after:.0f} MiB, residue {after - before:+.1f} MiB)")
    timings = warm_calls(args.calls)
    print(f"cold load of the test model (spawn worker + load): {timings.pop('_load_s')[0]:.2f} s")
    for name, values in timings.items():
        print(f"warm call, {name:24s}: p50 {statistics.median(values):7.3f} ms   "
              f"p95 {pct(values, 0.95):7.3f} ms   (n={len(values)})")
    hop = statistics.median(timings["registry (worker hop)"]) - statistics.median(timings["in-process predict()"])
    print(f"worker hop overhead (p50): {hop:.3f} ms")


if __name__ == "__main__":
    main()
