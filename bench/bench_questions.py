"""Benchmark the questions demo: accuracy (from config.json), model size,
latency through a real hub and in process, and batch throughput.

    python bench/bench_questions.py [--model models/questions] [--n 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

QUESTIONS = [
    "What is the capital of France?", "Who wrote Hamlet?", "How many moons does Jupiter have?",
    "When did the Berlin Wall fall?", "What does NASA stand for?", "Why is the sky blue?",
    "How far is the Moon from the Earth?", "What is the best way to learn to swim?",
]


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"p50 {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms"


def timed(fn, n: int) -> list[float]:
    out = []
    for i in range(n):
        started = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - started)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", type=Path, default=ROOT / "models" / "questions")
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    config = json.loads((args.model / "config.json").read_text())
    val = config.get("validation") or {}
    size = sum(f.stat().st_size for f in args.model.rglob("*") if f.is_file())
    print(f"validation (held-out 10%, not test): coarse {val.get('coarse_accuracy')}, "
          f"fine {val.get('fine_accuracy')}")
    print(f"model folder: {size / 2**20:.2f} MB (weights {(args.model / 'model.safetensors').stat().st_size / 2**20:.2f} MB)")

    from support import running_hub

    with running_hub("--only", "questions", "--model", f"questions={args.model}") as server:
        client = server.client()
        client.predict(QUESTIONS[0], api_name="/questions")  # load the model
        hub = timed(lambda i: client.predict(QUESTIONS[i % len(QUESTIONS)], api_name="/questions"), args.n)
        print(f"through the hub (gradio_client, one question): {percentiles(hub)}")
        _, metrics = server.get("/metrics")
        for line in metrics.splitlines():
            if line.startswith("demohub_model_memory_bytes") and 'questions' in line:
                print(f"worker memory after {args.n + 1} questions: {float(line.split()[-1]) / 2**20:.0f} MiB")
        rss = sum(psutil.Process(pid).memory_info().rss for pid in server.worker_pids())
        print(f"worker RSS: {rss / 2**20:.0f} MiB (bare `import torch` in this venv: see docs/benchmarks.md)")

    import torch

    from demos.questions import runtime

    torch.set_num_threads(args.threads)
    model = runtime.load(args.model)
    runtime.predict(model, {"text": QUESTIONS[0]})
    local = timed(lambda i: runtime.predict(model, {"text": QUESTIONS[i % len(QUESTIONS)]}), args.n * 4)
    print(f"in process (runtime.predict, one question): {percentiles(local)}")
    for size in (1, 32):
        batch = (QUESTIONS * 8)[:size]
        rounds = max(3, 256 // size)
        t = timed(lambda i: runtime.predict(model, {"texts": batch}), rounds)
        print(f"batch {size:>2}: {size * rounds / sum(t):.0f} questions/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
