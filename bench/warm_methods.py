"""Warm latency of a forked worker against a spawned one, call by call.

Two hubs run side by side on the same machine, one with `--start-method
template` and one with `--start-method spawn`, each serving the same demos;
after a warm-up, calls alternate between them (ABBA order), so both see the same
machine load. Separate runs of bench/vs_baseline.py differ by ±5 % between
themselves, too much to tell a template's worker from a spawned one.

    .venv/bin/python bench/warm_methods.py                       # cassava, durian, questions; 30 calls each
    .venv/bin/python bench/warm_methods.py --demos cassava --calls 60

Prints p10/p50/p90 per demo and method and the template/spawn ratio of the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import log, percentile  # noqa: E402
from vs_baseline import DEMOS, REQUEST_TIMEOUT_S, ROOT, Inputs, http_predict, hubs_side_by_side, timed  # noqa: E402

METHODS = ("template", "spawn")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demos", default=",".join(DEMOS))
    parser.add_argument("--calls", type=int, default=30, help="measured calls per demo and method")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache",
                        help="model folders (placeholders are written on first use)")
    args = parser.parse_args(argv)
    demos = [d for d in args.demos.split(",") if d]
    common_args = ["--cache-dir", str(args.cache_dir), "--max-models", "3", "--idle-ttl", "0",
                   "--only", ",".join(demos)]
    hubs = {method: [*common_args, "--start-method", method] for method in METHODS}
    with hubs_side_by_side(hubs, "warm-methods-") as servers:
        inputs = Inputs()
        times: dict[tuple[str, str], list[float]] = {}
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
            for demo in demos:
                for server in servers.values():
                    for _ in range(args.warmup):
                        http_predict(http, server.url, demo, inputs.next(demo))
                for i in range(args.calls):
                    order = METHODS if i % 2 == 0 else METHODS[::-1]
                    for method in order:
                        url = servers[method].url
                        times.setdefault((demo, method), []).append(
                            timed(lambda: http_predict(http, url, demo, inputs.next(demo))))
                log(f"{demo}: done")
        print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
        print("| demo | template p10 / p50 / p90 (ms) | spawn p10 / p50 / p90 (ms) | template / spawn (p50) |")
        print("|---|---|---|---|")
        for demo in demos:
            cells = []
            for method in METHODS:
                v = times[(demo, method)]
                cells.append(" / ".join(f"{percentile(v, q) * 1000:.1f}" for q in (0.1, 0.5, 0.9)))
            ratio = statistics.median(times[(demo, "template")]) / statistics.median(times[(demo, "spawn")])
            print(f"| {demo} | {cells[0]} | {cells[1]} | **{ratio:.2f}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
