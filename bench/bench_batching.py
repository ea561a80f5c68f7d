"""Does coalescing concurrent questions into one worker call pay, through the hub?

    .venv/bin/python bench/bench_batching.py                 # 3 rounds, ~4 min on 2 cores
    .venv/bin/python bench/bench_batching.py --rounds 1 --seconds 3   # a smoke run
    .venv/bin/python bench/bench_batching.py --json /tmp/batching.json

One hub serves the trained questions model twice, from a temporary demos
folder of two one-line wrapper packages: `qbatch` (max_batch 32: concurrent
requests share one call to `predict_batch`) and `qsolo` (max_batch 1: one call
per request, Gradio lets one in at a time, as the shipped demo did before
batching). Same worker code, same model folder, same hub process.

Each round measures, alternating which variant goes first:
- a lone client's latency (sequential requests alternating between the two
  variants request by request; p50 of each and the median paired difference), and
- throughput with 8, 16 and 32 concurrent clients for a fixed time,
through the plain HTTP API (POST /gradio_api/call/<name>, then read the result
stream). It prints batched/solo throughput ratios and the lone p50 difference
per round, then min-max over rounds. The criterion in issue 13: keep batching
if throughput rises >= 1.5x at 8-32 clients and the lone p50 rises <= 5 ms.

The hub binds 127.0.0.1 on a free port and is ended by PID (with its workers);
the temporary folders are removed. Every wait has a deadline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # demohub, for the in-process batcher figure (the hub runs as its own process)

from demohub.batching import OK, Batch, Batcher, Outcome  # noqa: E402
QUESTIONS = (
    "Who wrote Hamlet?", "What is the capital of France?", "How many moons does Jupiter have?",
    "When did the Berlin Wall fall?", "What does NASA stand for?", "Why is the sky blue?",
    "How far is the Moon from the Earth?", "Which river is the longest in Africa?",
)
WRAPPER = '''\
"""The shipped questions demo under another name, for bench/bench_batching.py."""
import dataclasses
from pathlib import Path

from demohub.spec import ModelSource
from demos.questions import SPEC as SHIPPED

SPEC = dataclasses.replace(SHIPPED, name={name!r}, title={name!r}, max_batch={max_batch},
                           model=ModelSource(local_dir=Path({folder!r})))
'''
VARIANTS = {"qbatch": 32, "qsolo": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_demos(tmp: Path) -> Path:
    demos = tmp / "benchdemos"
    demos.mkdir()
    (demos / "__init__.py").write_text("")
    for name, max_batch in VARIANTS.items():
        (demos / name).mkdir()
        (demos / name / "__init__.py").write_text(WRAPPER.format(
            name=name, max_batch=max_batch, folder=str(ROOT / "models" / "questions")))
    return demos


def start_hub(demos: Path, tmp: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=str(tmp / "gradio"))
    cmd = [sys.executable, str(ROOT / "hub.py"), "--host", "127.0.0.1", "--port", str(port),
           "--demos-dir", str(demos), "--cache-dir", str(tmp / "cache"), "--idle-ttl", "0",
           "--queue-size", "128", "--per-client-queue", "0"]  # up to 32 clients, all from 127.0.0.1
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hub exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.3)
    stop(proc)
    raise RuntimeError("hub did not answer /healthz within 120 s")


def stop(proc: subprocess.Popen) -> None:
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    for child in children:  # workers exit with the hub; make sure
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


def ask(http: httpx.Client, url: str, name: str, question: str) -> None:
    resp = http.post(f"{url}/gradio_api/call/{name}", json={"data": [question]})
    resp.raise_for_status()
    event_id = resp.json()["event_id"]
    resp = http.get(f"{url}/gradio_api/call/{name}/{event_id}")
    resp.raise_for_status()
    if "event: complete" not in resp.text:
        raise RuntimeError(resp.text.strip()[:300])


def lone_latency(url: str, names: list[str], n: int) -> dict[str, list[float]]:
    """One client, sequential requests alternating between the variants request by
    request, so the machine's drifting load falls on both alike."""
    out: dict[str, list[float]] = {name: [] for name in names}
    with httpx.Client(timeout=60) as http:
        for i in range(n):
            for name in (names if i % 2 == 0 else names[::-1]):
                started = time.perf_counter()
                ask(http, url, name, QUESTIONS[i % len(QUESTIONS)])
                out[name].append(time.perf_counter() - started)
    return out


def batcher_overhead(n: int = 20000) -> float:
    """Seconds the batcher adds to a lone request in the hub process (a call that
    does nothing, through Batcher.submit, minus the same call made directly)."""
    def run(batch: Batch) -> list[Outcome]:
        return [Outcome(OK, r) for r in batch.requests]

    batcher = Batcher("bench", 32)
    began = time.perf_counter()
    for i in range(n):
        run(Batch((i,)))
    direct = time.perf_counter() - began
    began = time.perf_counter()
    for i in range(n):
        batcher.submit(i, run, 10.0)
    return (time.perf_counter() - began - direct) / n


def throughput(url: str, name: str, clients: int, seconds: float) -> tuple[float, int]:
    """(answers per second, errors) with `clients` threads asking back to back."""
    done, errors = [0] * clients, [0] * clients
    start = threading.Barrier(clients + 1, timeout=60)
    stop_at: list[float] = []

    def client(i: int) -> None:
        with httpx.Client(timeout=60) as http:
            start.wait()
            k = i
            while time.perf_counter() < stop_at[0]:
                try:
                    ask(http, url, name, QUESTIONS[k % len(QUESTIONS)])
                    done[i] += 1
                except (httpx.HTTPError, RuntimeError):
                    errors[i] += 1
                k += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at.append(time.perf_counter() + seconds)
    began = time.perf_counter()
    start.wait()
    for t in threads:
        t.join(seconds + 90)
    elapsed = time.perf_counter() - began
    return sum(done) / elapsed, sum(errors)


def spread(values: list[float], fmt: str) -> str:
    return f"{format(min(values), fmt)} to {format(max(values), fmt)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each throughput run")
    parser.add_argument("--lone", type=int, default=60, help="sequential requests per variant for the lone p50")
    parser.add_argument("--clients", default="8,16,32")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.clients.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="bench-batching-"))
    proc = None
    rounds = []
    try:
        demos = write_demos(tmp)
        proc, url = start_hub(demos, tmp, tmp / "hub.log")
        lone_latency(url, list(VARIANTS), 10)  # load both models, and warm them
        for r in range(args.rounds):
            order = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))
            row: dict = {"order": order, "lone_p50_ms": {}, "lone_paired_ms": 0.0, "throughput": {},
                         "errors": {}}
            lone = lone_latency(url, order, args.lone)
            for name in order:
                row["lone_p50_ms"][name] = statistics.median(lone[name]) * 1000
            row["lone_paired_ms"] = statistics.median(b - s for b, s in zip(lone["qbatch"], lone["qsolo"])) * 1000
            for clients in levels:
                # A B B A, each for half the time: both variants see the same stretch of load
                for name in order + order[::-1]:
                    rate, errors = throughput(url, name, clients, args.seconds / 2)
                    t = row["throughput"].setdefault(str(clients), {})
                    t[name] = t.get(name, 0.0) + rate / 2
                    e = row["errors"].setdefault(str(clients), {})
                    e[name] = e.get(name, 0) + errors
            rounds.append(row)
            p50 = row["lone_p50_ms"]
            line = [f"round {r + 1} ({' then '.join(order)}): lone p50 batch {p50['qbatch']:.1f} ms, "
                    f"solo {p50['qsolo']:.1f} ms; median paired difference {row['lone_paired_ms']:+.1f} ms"]
            for clients in levels:
                t = row["throughput"][str(clients)]
                line.append(f"  {clients:>2} clients: batch {t['qbatch']:.1f}/s, solo {t['qsolo']:.1f}/s, "
                            f"ratio {t['qbatch'] / t['qsolo']:.2f}x, errors {row['errors'][str(clients)]}")
            print("\n".join(line), flush=True)
        log = (tmp / "hub.log").read_text(errors="replace")
    finally:
        if proc is not None:
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)

    print("\nsummary over", len(rounds), "round(s), min-max:")
    deltas = [row["lone_p50_ms"]["qbatch"] - row["lone_p50_ms"]["qsolo"] for row in rounds]
    paired = [row["lone_paired_ms"] for row in rounds]
    print(f"  lone p50: batch {spread([r['lone_p50_ms']['qbatch'] for r in rounds], '.1f')} ms, "
          f"solo {spread([r['lone_p50_ms']['qsolo'] for r in rounds], '.1f')} ms, "
          f"p50 difference {spread(deltas, '+.1f')} ms, median paired difference {spread(paired, '+.1f')} ms")
    overhead = batcher_overhead()
    print(f"  the batcher's own cost per lone request, in process: {overhead * 1e6:.1f} us")
    for clients in levels:
        ratios = [r["throughput"][str(clients)]["qbatch"] / r["throughput"][str(clients)]["qsolo"] for r in rounds]
        batch = [r["throughput"][str(clients)]["qbatch"] for r in rounds]
        solo = [r["throughput"][str(clients)]["qsolo"] for r in rounds]
        print(f"  {clients:>2} clients: batch {spread(batch, '.1f')}/s, solo {spread(solo, '.1f')}/s, "
              f"ratio {spread(ratios, '.2f')}x")
    worst_ratio = min(r["throughput"][str(c)]["qbatch"] / r["throughput"][str(c)]["qsolo"]
                      for r in rounds for c in levels)
    keep = worst_ratio >= 1.5 and max(deltas) <= 5.0
    print(f"  criterion (every ratio >= 1.5x, every lone p50 difference <= 5 ms): "
          f"{'met' if keep else 'NOT met'} (worst ratio {worst_ratio:.2f}x, worst p50 difference "
          f"{max(deltas):+.1f} ms, worst paired difference {max(paired):+.1f} ms)")
    if "Traceback" in log:
        print("  note: the hub log holds a traceback; run with --json and read it", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"rounds": rounds, "levels": levels}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
