"""The Ray backend against the local spawn backend, side by side in one run on
this machine, with the ray/spawn ratio of every figure (min-max over rounds).

    .venv/bin/python bench/bench_ray.py                 # 2 rounds, ~10 min on 2 cores
    .venv/bin/python bench/bench_ray.py --rounds 1 --warm 5 --throughput-seconds 15   # smoke run
    .venv/bin/python bench/bench_ray.py --json /tmp/ray.json                         # raw samples too

Each round starts the real hub once per configuration (the order alternates
between rounds): `spawn` (the baseline: a worker process per model, CPU
threads as the registry grants them), `spawn-1-thread` (the same with
`--worker-threads 1`: a control, since a Ray replica asks for 1 CPU and Ray
runs it with 1 thread) and `ray`; all with `--max-models 2 --idle-ttl 0`, the
shipped demos (questions trained, cassava and durian placeholders). The Ray
hub starts its own one-node Ray on 127.0.0.1 (no --ray-address), so every
process either backend uses is a descendant of the hub and one measure of the
whole tree (PSS) compares them. Per hub:

- page ready: start to /healthz (for Ray, this includes starting Ray);
- cold start per demo: the first request, which loads the model (a worker
  process, or a Serve application and its replica);
- warm latency per demo: `--warm` requests one at a time over plain HTTP
  (Gradio's /gradio_api/call), p50 and p95;
- memory once two models are loaded: the whole tree's PSS, the hub process,
  the models (the registry's figure) and, for Ray, Ray's own processes
  (raylet, GCS, agents, Serve controller, idle workers: /metrics);
- throughput: 8 clients for `--throughput-seconds`, 70 % questions and 30 %
  cassava (both loaded, so no eviction in the window), answers per second.

Only one hub runs at a time; each is ended by PID and the bench checks that no
process of its tree survives.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from common import free_port, log, percentile  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT.parent / "shared" / "data" / "images"
DEMOS = ("questions", "cassava", "durian")
QUESTIONS = ("Who wrote Hamlet?", "What is the capital of France?", "How many moons does Jupiter have?",
             "When did the Berlin Wall fall?", "What does NASA stand for?", "Why is the sky blue?")
MIX = {"questions": 0.7, "cassava": 0.3}
CLIENTS = 8
REQUEST_TIMEOUT_S = 300.0
START_TIMEOUT_S = 240.0
HUB_ARGS = ["--max-models", "2", "--idle-ttl", "0"]


def pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def inputs(demo: str, n: int) -> str:
    if demo == "questions":
        return QUESTIONS[n % len(QUESTIONS)]
    photos = sorted(p.name for p in IMAGES.glob(f"{demo}_*.jpg"))
    return str(IMAGES / photos[n % len(photos)])


def call(http: httpx.Client, url: str, demo: str, value: str) -> None:
    """One request as a browser-less caller makes it (upload, call, read the stream)."""
    if demo == "questions":
        data: list[Any] = [value]
    else:
        with open(value, "rb") as photo:
            resp = http.post(f"{url}/gradio_api/upload", files=[("files", (Path(value).name, photo, "image/jpeg"))])
        resp.raise_for_status()
        data = [{"path": resp.json()[0], "meta": {"_type": "gradio.FileData"}, "orig_name": Path(value).name}]
    resp = http.post(f"{url}/gradio_api/call/{demo}", json={"data": data})
    resp.raise_for_status()
    resp = http.get(f"{url}/gradio_api/call/{demo}/{resp.json()['event_id']}")
    resp.raise_for_status()
    if "event: complete" not in resp.text:
        raise RuntimeError(f"{demo}: {resp.text.strip()[:300]}")


def metrics(http: httpx.Client, url: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in http.get(f"{url}/metrics").text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        key, value = line.rsplit(" ", 1)
        out[key] = float(value)
    return out


#: what each configuration adds to HUB_ARGS; "spawn" is the baseline
CONFIGS = {
    "spawn": ["--backend", "local", "--start-method", "spawn"],
    # the control: a Ray replica asks for 1 CPU, and Ray gives it 1 thread
    "spawn-1-thread": ["--backend", "local", "--start-method", "spawn", "--worker-threads", "1"],
    "ray": ["--backend", "ray"],
}


class Hub:
    def __init__(self, backend: str, cache_dir: Path):
        self.backend = backend
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.mkstemp(prefix=f"bench-ray-{backend}-", suffix=".log")[1])
        cmd = [sys.executable, str(ROOT / "hub.py"), "--host", "127.0.0.1", "--port", str(self.port),
               "--cache-dir", str(cache_dir), *CONFIGS[backend], *HUB_ARGS]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "HUB_"))}
        env["GRADIO_ANALYTICS_ENABLED"] = "False"
        self.started = time.perf_counter()
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        self.seen: set[int] = set()

    def wait_ready(self) -> float:
        deadline = self.started + START_TIMEOUT_S
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.backend} hub exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return time.perf_counter() - self.started
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.backend} hub not ready in {START_TIMEOUT_S} s")

    def tree(self) -> list[psutil.Process]:
        try:
            procs = [psutil.Process(self.proc.pid)] + psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return []
        self.seen.update(p.pid for p in procs)
        return procs

    def stop(self) -> int:
        """End the hub by PID; returns how many of its processes had to be killed after it."""
        self.tree()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        left = []
        for pid in self.seen - {self.proc.pid}:
            try:
                p = psutil.Process(pid)
                if p.status() != psutil.STATUS_ZOMBIE:
                    left.append(p)
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(left, timeout=20)
        for p in alive:
            p.kill()
        return len(alive)


def throughput(url: str, seconds: float, seed: int) -> dict[str, Any]:
    demos, weights = list(MIX), list(MIX.values())
    deadline = time.perf_counter() + seconds
    lock = threading.Lock()
    answered: list[float] = []
    errors: list[str] = []

    def client(index: int) -> None:
        rng = random.Random(seed * 100 + index)
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
            n = 0
            while time.perf_counter() < deadline:
                demo = rng.choices(demos, weights)[0]
                started = time.perf_counter()
                try:
                    call(http, url, demo, inputs(demo, index + n))
                except Exception as exc:  # noqa: BLE001 - counted, reported
                    with lock:
                        errors.append(f"{demo}: {exc}"[:200])
                    continue
                finally:
                    n += 1
                if time.perf_counter() <= deadline:
                    with lock:
                        answered.append(time.perf_counter() - started)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + REQUEST_TIMEOUT_S)
    # answers finished inside the window only; requests still in flight at its end are not counted
    return {"answers_per_s": len(answered) / seconds, "answered": len(answered), "errors": errors}


def run_hub(backend: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    log(f"starting the {backend} hub")
    hub = Hub(backend, args.cache_dir)
    out: dict[str, Any] = {"backend": backend, "cold_s": {}, "warm": {}}
    try:
        out["page_ready_s"] = hub.wait_ready()
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
            for demo in args.demos:
                started = time.perf_counter()
                call(http, hub.url, demo, inputs(demo, 0))
                out["cold_s"][demo] = time.perf_counter() - started
                samples = []
                for n in range(args.warm):
                    started = time.perf_counter()
                    call(http, hub.url, demo, inputs(demo, n + 1))
                    samples.append(time.perf_counter() - started)
                out["warm"][demo] = {"p50": statistics.median(samples), "p95": percentile(samples, 0.95),
                                     "samples": samples}
                log(f"{backend}: {demo} cold {out['cold_s'][demo]:.2f} s, warm p50 "
                    f"{out['warm'][demo]['p50'] * 1000:.0f} ms")
            # the two models of the throughput mix, loaded (the third was evicted by --max-models 2)
            for demo in MIX:
                call(http, hub.url, demo, inputs(demo, 0))
            time.sleep(3.0)  # one sweep: the registry re-measures models and Ray's processes
            m = metrics(http, hub.url)
            out["tree_pss"] = sum(pss(p.pid) for p in hub.tree())
            out["hub_pss"] = m.get("demohub_hub_memory_bytes", 0.0)
            out["models_pss"] = sum(v for k, v in m.items() if k.startswith("demohub_model_memory_bytes{"))
            out["shared_pss"] = sum(v for k, v in m.items() if k.startswith("demohub_shared_process_memory_bytes{"))
            out["shared_by_process"] = {k.split('"')[1]: v for k, v in m.items()
                                        if k.startswith("demohub_shared_process_memory_bytes{")}
        out["throughput"] = throughput(hub.url, args.throughput_seconds, seed)
        log(f"{backend}: {out['throughput']['answers_per_s']:.2f} answers/s, "
            f"tree PSS {out['tree_pss'] / 2**20:.0f} MiB")
    finally:
        out["left_behind"] = hub.stop()
        hub.log_path.unlink(missing_ok=True)
    return out


def fmt(value: float, unit: str) -> str:
    if unit == "MiB":
        return f"{value / 2**20:.0f}"
    if unit == "ms":
        return f"{value * 1000:.0f}"
    return f"{value:.2f}"


def table(rounds: list[dict[str, dict]], demos: tuple[str, ...], configs: tuple[str, ...]) -> str:
    rows: list[tuple[str, str, Any]] = [("page ready (s)", "s", lambda r: r["page_ready_s"])]
    for demo in demos:
        rows.append((f"{demo}: cold start, first answer (s)", "s", lambda r, d=demo: r["cold_s"][d]))
    for demo in demos:
        rows.append((f"{demo}: warm p50 (ms)", "ms", lambda r, d=demo: r["warm"][d]["p50"]))
        rows.append((f"{demo}: warm p95 (ms)", "ms", lambda r, d=demo: r["warm"][d]["p95"]))
    rows += [
        ("whole tree PSS, 2 models loaded (MiB)", "MiB", lambda r: r["tree_pss"]),
        ("hub process PSS (MiB)", "MiB", lambda r: r["hub_pss"]),
        ("models PSS, registry's figure (MiB)", "MiB", lambda r: r["models_pss"]),
        ("Ray's own processes PSS (MiB)", "MiB", lambda r: r["shared_pss"]),
        ("throughput, 8 clients, 70/30 questions/cassava (answers/s)", "x",
         lambda r: r["throughput"]["answers_per_s"]),
    ]
    others = [c for c in configs if c != "spawn"]
    head = "| figure | " + " | ".join(configs) + " | " + " | ".join(f"{c} / spawn (min-max)" for c in others) + " |"
    lines = [head, "| --- " * (1 + len(configs) + len(others)) + "|"]

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs)

    for label, unit, get in rows:
        values = {c: [get(r[c]) for r in rounds] for c in configs}
        cells = [fmt(mean(values[c]), unit) for c in configs]
        for c in others:
            ratios = [b / a for a, b in zip(values["spawn"], values[c]) if a]
            cells.append(f"{mean(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})" if ratios else "n/a")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warm", type=int, default=15)
    parser.add_argument("--throughput-seconds", type=float, default=30.0)
    parser.add_argument("--demos", default=",".join(DEMOS))
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache" / "bench-ray",
                        help="placeholder folders, built once and kept between runs")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="from: " + ", ".join(CONFIGS))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    args.demos = tuple(d.strip() for d in args.demos.split(",") if d.strip())
    configs = tuple(c.strip() for c in args.configs.split(",") if c.strip())
    if "spawn" not in configs or any(c not in CONFIGS for c in configs):
        parser.error(f"--configs must include spawn and name only {', '.join(CONFIGS)}")
    started = time.perf_counter()
    rounds = []
    for index in range(args.rounds):
        order = configs if index % 2 == 0 else tuple(reversed(configs))
        rounds.append({config: run_hub(config, args, seed=index) for config in order})
    print(table(rounds, args.demos, configs))
    errors = {c: sum(len(r[c]["throughput"]["errors"]) for r in rounds) for c in configs}
    left = {c: sum(r[c]["left_behind"] for r in rounds) for c in configs}
    if "ray" in configs:
        shared = rounds[-1]["ray"]["shared_by_process"]
        print("\nRay's own processes in the last round (MiB): "
              + ", ".join(f"{k[len('ray: '):]} {v / 2**20:.0f}" for k, v in sorted(shared.items())))
    print(f"errors in the throughput window: {errors}; processes left after the hub stopped: {left}")
    print(f"{args.rounds} rounds, {args.warm} warm calls per demo, {args.throughput_seconds:.0f} s throughput "
          f"window; run took {(time.perf_counter() - started) / 60:.1f} min on {os.cpu_count()} cores.")
    if args.json:
        args.json.write_text(json.dumps(rounds, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
