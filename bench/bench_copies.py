"""What copies of a busy model buy and cost (demohub/backends/local/copies.py), and
what bounding Gradio's per-event analytics saves (demohub/web/app.py).

The same hub three times: one process per model (`--max-copies 1`), the default
(a busy model may get more worker processes), and the default with Gradio's own
analytics settings back (a summary of the last 10,000 events after every event);
one at a time so each has the machine to itself, the order reversed every round
so drifts in the machine's load fall on all. Each hub loads all three demos, takes a short mixed stream to
warm up (the copies start there), then the measured mixed stream: 8 clients,
60 % questions, 20 % cassava, 20 % durian, as in bench/vs_baseline.py. Reported:
answers per second, CPU-seconds per answer, p50 latency per demo, the copies
the hub started, and the tree's memory right after the stream.

    .venv/bin/python bench/bench_copies.py                  # 2 rounds of 30 s streams, ~6 min
    .venv/bin/python bench/bench_copies.py --rounds 1 --seconds 15   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import log  # noqa: E402
from vs_baseline import (DEMOS, REQUEST_TIMEOUT_S, ROOT, Inputs, describe_code, http_predict,  # noqa: E402
                         hubs_side_by_side, mixed_stream, tree_memory)

#: label: (hub arguments, environment). The third undoes the hub's bound on Gradio's
#: per-event analytics summary (demohub/web/app.py) to show what that bound saves.
SETTINGS: dict[str, tuple[list[str], dict[str, str]]] = {
    "one process per model": (["--max-copies", "1"], {}),
    "copies (default)": ([], {}),
    "copies, Gradio's default analytics": ([], {"GRADIO_ANALYTICS_MAX_EVENTS": "10000",
                                                "GRADIO_ANALYTICS_CACHE_FREQUENCY": "1"}),
}


def one_run(label: str, cache_dir: Path, warmup_s: float, seconds: float, seed: int) -> dict:
    args, env = SETTINGS[label]
    hub_args = ["--cache-dir", str(cache_dir), "--max-models", "3", "--idle-ttl", "0", *args]
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the hub inherits it; put back below
    try:
        return _measure(label, hub_args, warmup_s, seconds, seed)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _measure(label: str, hub_args: list[str], warmup_s: float, seconds: float, seed: int) -> dict:
    with hubs_side_by_side({label: hub_args}, "bench-copies-") as servers:
        server = servers[label]
        inputs = Inputs()
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
            for demo in DEMOS:
                http_predict(http, server.url, demo, inputs.next(demo))
        mixed_stream(server.url, server.pid, warmup_s, seed=seed + 1000)
        stream = mixed_stream(server.url, server.pid, seconds, seed=seed)
        memory = tree_memory(server.pid)
        events = [json.loads(line) for line in server.log_path.read_text(errors="replace").splitlines()
                  if line.startswith("{") and '"event": "copy_' in line]
    copies = sorted(e["model"] for e in events if e["event"] == "copy_ready")
    log(f"{label}: {stream['answers_per_s']:.2f}/s, {stream['cpu_s_per_answer']:.4f} CPU-s each, "
        f"{len(stream['errors'])} errors, copies started: {copies or 'none'}")
    return {"stream": stream, "memory": memory, "copies": copies}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=30.0, help="the measured mixed stream")
    parser.add_argument("--warmup", type=float, default=8.0, help="the mixed stream before it")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache")
    args = parser.parse_args(argv)
    print(f"Command: `.venv/bin/python bench/bench_copies.py {' '.join(argv or sys.argv[1:])}`  ")
    print(f"Code: {describe_code(ROOT)}; load average (1 min) at start {os.getloadavg()[0]:.2f}.  ")
    runs: dict[str, list[dict]] = {label: [] for label in SETTINGS}
    for r in range(args.rounds):
        order = list(SETTINGS) if r % 2 == 0 else list(SETTINGS)[::-1]
        for label in order:
            runs[label].append(one_run(label, args.cache_dir, args.warmup, args.seconds, seed=r))
    print(f"Load average (1 min) at the end {os.getloadavg()[0]:.2f}; {args.rounds} round(s), "
          f"{args.seconds:g} s measured after {args.warmup:g} s of warm-up.\n")

    def med(label: str, get) -> float:
        return statistics.median(get(run) for run in runs[label])

    def span(label: str, get, digits: int) -> str:
        values = [get(run) for run in runs[label]]
        return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"

    figures = [("answers per second (higher is better)", lambda x: x["stream"]["answers_per_s"], 2),
               ("server CPU-seconds per answer", lambda x: x["stream"]["cpu_s_per_answer"], 4),
               *[(f"{d} latency p50 (s)", lambda x, d=d: x["stream"]["per_demo"][d]["p50"], 3) for d in DEMOS],
               ("tree PSS right after the stream (MiB)", lambda x: x["memory"]["pss"] / 2**20, 0),
               ("tree RSS right after the stream (MiB)", lambda x: x["memory"]["rss"] / 2**20, 0)]
    one, many, unbounded = SETTINGS
    print(f"| figure | {one} | {many} | {unbounded} | {many} / {one} | {many} / {unbounded} |")
    print("|---|---|---|---|---|---|")
    for name, get, digits in figures:
        print(f"| {name} | {span(one, get, digits)} | {span(many, get, digits)} | {span(unbounded, get, digits)} | "
              f"**{med(many, get) / med(one, get):.2f}** | **{med(many, get) / med(unbounded, get):.2f}** |")
    started = {label: sorted({m for run in runs[label] for m in run["copies"]}) for label in SETTINGS}
    print(f"\ncopies started (any round): {started[many] or 'none'}; errors: "
          f"{sum(len(run['stream']['errors']) for label in SETTINGS for run in runs[label])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
