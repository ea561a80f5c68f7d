"""What resting Gradio's queue saves and what it costs (demohub/web/pacing.py).

Two hubs serve questions side by side: one never rests (`--queue-rest-after 0`,
Gradio's own 1 ms poll), one rests after 1 s without a request. Both are
measured at the same time: the hub process's CPU while idle, then the first
answer after a pause longer than the quiet time, alternating between the hubs.

    .venv/bin/python bench/bench_pacing.py                 # 12 pauses of 2.5 s, ~2 min
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import log  # noqa: E402
from vs_baseline import REQUEST_TIMEOUT_S, ROOT, Inputs, http_predict, hubs_side_by_side, timed  # noqa: E402

SETTINGS = {"never rests": "0", "rests after 1 s": "1"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pauses", type=int, default=12)
    parser.add_argument("--pause-seconds", type=float, default=2.5)
    parser.add_argument("--idle-seconds", type=float, default=15.0)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache")
    args = parser.parse_args(argv)
    hubs = {label: ["--cache-dir", str(args.cache_dir), "--only", "questions", "--queue-rest-after", rest]
            for label, rest in SETTINGS.items()}
    with hubs_side_by_side(hubs, "bench-pacing-") as servers:
        inputs = Inputs()
        warm: dict[str, list[float]] = {k: [] for k in servers}
        after_rest: dict[str, list[float]] = {k: [] for k in servers}
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
            for label, server in servers.items():
                for _ in range(5):
                    http_predict(http, server.url, "questions", inputs.next("questions"))
                warm[label] = [timed(lambda: http_predict(http, server.url, "questions", inputs.next("questions")))
                               for _ in range(args.pauses)]
            time.sleep(3)  # past the quiet time: the resting hub rests
            procs = {label: psutil.Process(s.pid) for label, s in servers.items()}
            before = {label: sum(p.cpu_times()[:2]) for label, p in procs.items()}
            time.sleep(args.idle_seconds)
            idle = {label: (sum(p.cpu_times()[:2]) - before[label]) / args.idle_seconds for label, p in procs.items()}
            log(f"idle: {', '.join(f'{k} {v * 100:.2f} %' for k, v in idle.items())}")
            for i in range(args.pauses):
                order = list(servers) if i % 2 == 0 else list(servers)[::-1]
                for label in order:
                    time.sleep(args.pause_seconds)
                    url = servers[label].url
                    after_rest[label].append(timed(lambda: http_predict(http, url, "questions",
                                                                        inputs.next("questions"))))
        print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
        print("| hub | idle CPU of the hub process (% of a core) | warm questions p50 (ms) | "
              f"first answer after a {args.pause_seconds:g} s pause, p50 / max (ms) |")
        print("|---|---|---|---|")
        for label in servers:
            print(f"| {label} | {idle[label] * 100:.2f} | {statistics.median(warm[label]) * 1000:.1f} | "
                  f"{statistics.median(after_rest[label]) * 1000:.1f} / {max(after_rest[label]) * 1000:.1f} |")
        resting, never = "rests after 1 s", "never rests"
        print(f"\nresting / never resting: idle CPU {idle[resting] / idle[never]:.2f}, first answer after a pause "
              f"(p50) {statistics.median(after_rest[resting]) / statistics.median(after_rest[never]):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
