"""Does `--memory-budget` hold under a plain mixed stream? (issue 32)

Starts a hub with a budget, sends a mixed stream from several gradio_client
visitors (by default 40 % questions, 30 % cassava, 30 % durian, one photo for
every image request), and sums the PSS of every process under the hub (its
workers, copies and templates: what the budget covers) every 0.2 s from
/proc/PID/smaps_rollup. Prints samples over the budget, the worst one and what
was in it, answers, loads and evictions per demo, and p50/p95.

    .venv/bin/python bench/budget_stream.py --budget 1000M --start-method template --seconds 40
    .venv/bin/python bench/budget_stream.py --root /tmp/old-checkout ...   # the same stream against other code

`run()` is also what tests/test_budget.py calls, with a shorter stream.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from common import free_port, log, percentile  # noqa: E402
from demohub.memory import process_memory  # noqa: E402

QUESTIONS = ["Who wrote Hamlet?", "How far is the moon?", "What is the capital of Peru?",
             "When did the Berlin wall fall?", "Why is the sky blue?"]
MIX = {"questions": 0.4, "cassava": 0.3, "durian": 0.3}


def make_photo(path: Path) -> Path:
    """A photo-like 800x600 JPEG (gradients and noise), the same for every request."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:600, 0:800]
    rgb = np.stack([(x / 800 * 255), (y / 600 * 200), ((x + y) % 255)], axis=-1)
    Image.fromarray(np.clip(rgb + rng.normal(0, 25, rgb.shape), 0, 255).astype(np.uint8)).save(path, quality=92)
    return path


@dataclass
class Sample:
    t: float
    total: int
    parts: dict[str, int]


@dataclass
class Report:
    budget: int
    start_method: str
    seconds: float
    samples: int = 0
    over: int = 0
    worst_bytes: int = 0
    worst_parts: dict[str, int] = field(default_factory=dict)
    answers: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    loads: dict[str, float] = field(default_factory=dict)
    evictions: dict[str, float] = field(default_factory=dict)
    p50_s: dict[str, float] = field(default_factory=dict)
    p95_s: dict[str, float] = field(default_factory=dict)

    @property
    def worst_over(self) -> float:
        """The worst sample as a fraction over the budget (0.27: 27 % over)."""
        return max(0.0, self.worst_bytes / self.budget - 1)

    def line(self) -> str:
        mb = 2**20
        return (f"{self.start_method} budget {self.budget / mb:.0f} MiB: {self.over}/{self.samples} samples over, "
                f"worst {self.worst_bytes / mb:.0f} MiB ({self.worst_over * 100:+.1f} %); answers "
                f"{dict(self.answers)}, failures {dict(self.failures)}; loads {self.loads}; evictions "
                f"{self.evictions}; p95 {self.p95_s}")


def _label(proc: psutil.Process) -> str:
    try:
        cmd = proc.cmdline()
        name = proc.name()
    except psutil.Error:
        return f"pid {proc.pid}"
    if name.startswith("w:"):  # a worker forked from a template names itself
        return f"{name[2:]} {proc.pid}"
    if name.startswith("template:") or "demohub.backends.local.template_main" in cmd:
        family = cmd[cmd.index("--family") + 1] if "--family" in cmd else name
        return f"template {family.removeprefix('template:').strip()} {proc.pid}"
    joined = " ".join(cmd)
    match = re.search(r"--name (\S+)", joined) or re.search(r"worker[: ]+(\w+)", name)
    return f"{match.group(1) if match else name} {proc.pid}"


def tree_memory(hub_pid: int) -> Sample:
    """PSS of every process under the hub (not the hub itself: the budget is for models)."""
    parts = {}
    try:
        children = psutil.Process(hub_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    for child in children:
        parts[_label(child)] = process_memory(child.pid, "pss")
    return Sample(time.time(), sum(parts.values()), parts)


def _metric(text: str, name: str) -> dict[str, float]:
    out: Counter = Counter()
    for m in re.finditer(rf'^{name}\{{([^}}]*)\}} (\S+)$', text, re.M):
        model = re.search(r'model="([^"]+)"', m.group(1))
        if model:
            out[model.group(1)] += float(m.group(2))
    return dict(out)


def run(budget: int, start_method: str, seconds: float, clients: int = 6, root: Path = HERE.parent,
        extra_args: tuple[str, ...] = (), cache_dir: Path | None = None, seed: int = 0,
        mix: dict[str, float] = MIX, keep_log: Path | None = None) -> Report:
    from gradio_client import Client, handle_file
    import urllib.request

    work = Path(tempfile.mkdtemp(prefix="budget-stream-"))
    photo = handle_file(str(make_photo(work / "photo.jpg")))
    port = free_port()
    cache_dir = cache_dir or (HERE.parent / ".cache" / "bench-budget")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "TMPDIR": str(work)}
    cmd = [sys.executable, str(root / "hub.py"), "--host", "127.0.0.1", "--port", str(port),
           "--cache-dir", str(cache_dir), "--memory-budget", str(budget), "--start-method", start_method,
           *extra_args]
    log_file = open(work / "hub.log", "wb")
    hub = subprocess.Popen(cmd, cwd=root, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    report = Report(budget, start_method, seconds)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(url + "healthz", timeout=2).read()
                break
            except OSError:
                if hub.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"hub did not start: {(work / 'hub.log').read_text()[-2000:]}")
                time.sleep(0.2)
        samples: list[Sample] = []
        stop = threading.Event()  # visitors send no new request
        sampled = threading.Event()  # every request has ended: sampling too

        def sample() -> None:  # every 0.2 s from the start: a slow reading does not push the next back
            due = time.monotonic()
            while not sampled.wait(max(0.0, due - time.monotonic())):
                samples.append(tree_memory(hub.pid))
                due = max(due + 0.2, time.monotonic() - 0.2)

        latencies: dict[str, list[float]] = {d: [] for d in mix}
        lock = threading.Lock()

        def visitor(index: int) -> None:
            rng = random.Random(seed * 1000 + index)
            client = Client(url, verbose=False, download_files=str(work / f"downloads-{index}"))
            names, weights = list(mix), list(mix.values())
            while not stop.is_set():
                demo = rng.choices(names, weights)[0]
                arg = rng.choice(QUESTIONS) if demo == "questions" else photo
                started = time.monotonic()
                try:
                    client.predict(arg, api_name=f"/{demo}")
                except Exception as exc:  # noqa: BLE001 - counted and reported, the stream goes on
                    with lock:
                        report.failures[demo] = report.failures.get(demo, 0) + 1
                        report.errors.append(f"{demo}: {str(exc)[:200]}")
                    continue
                with lock:
                    report.answers[demo] = report.answers.get(demo, 0) + 1
                    latencies[demo].append(time.monotonic() - started)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        threads = [threading.Thread(target=visitor, args=(i,), daemon=True) for i in range(clients)]
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join(120)  # a visitor finishes its request in flight
        sampled.set()
        sampler.join(5)
        metrics = urllib.request.urlopen(url + "metrics", timeout=10).read().decode()
        report.loads = _metric(metrics, "demohub_loads_total")
        report.evictions = _metric(metrics, "demohub_evictions_total")
        report.samples = len(samples)
        report.over = sum(s.total > budget for s in samples)
        worst = max(samples, key=lambda s: s.total, default=None)
        if worst is not None:
            report.worst_bytes, report.worst_parts = worst.total, worst.parts
        for demo, values in latencies.items():
            if values:
                report.p50_s[demo] = round(percentile(values, 0.5), 3)
                report.p95_s[demo] = round(percentile(values, 0.95), 3)
    finally:
        hub.terminate()
        try:
            hub.wait(20)
        except subprocess.TimeoutExpired:
            hub.kill()
            hub.wait()
        log_file.close()
        if keep_log is not None:
            keep_log.write_bytes((work / "hub.log").read_bytes())
            with open(keep_log, "a") as f:  # the samples over the budget, for reading beside the events
                for s in samples if "samples" in locals() else []:
                    if s.total > budget:
                        f.write(json.dumps({"sample": round(s.t, 2), "mb": s.total // 2**20,
                                            "parts": {k: v // 2**20 for k, v in s.parts.items()}}) + "\n")
        report.errors = report.errors[:20]
        subprocess.run(["rm", "-rf", str(work)], check=False)
    return report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", required=True, help="e.g. 1000M")
    p.add_argument("--start-method", default="template", choices=("template", "spawn"))
    p.add_argument("--seconds", type=float, default=40)
    p.add_argument("--clients", type=int, default=6)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--root", type=Path, default=HERE.parent, help="checkout whose hub.py to run")
    p.add_argument("--hub-args", default="", help="more flags for hub.py")
    p.add_argument("--json", type=Path)
    p.add_argument("--keep-log", type=Path, help="write the hub's log (and the samples over budget) here")
    args = p.parse_args()
    from demohub.config import parse_size

    budget = parse_size(args.budget)
    reports = []
    for index in range(args.rounds):
        log(f"round {index + 1}: {args.root} {args.start_method} budget {args.budget}, {args.seconds:.0f} s, "
            f"load {os.getloadavg()[0]:.2f}")
        report = run(budget, args.start_method, args.seconds, args.clients, args.root.resolve(),
                     tuple(args.hub_args.split()), seed=index, keep_log=args.keep_log)
        log(report.line())
        reports.append(report)
    if args.json:
        args.json.write_text(json.dumps([{**asdict(r), "worst_over": r.worst_over} for r in reports], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
