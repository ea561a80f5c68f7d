"""Soak: mixed traffic against a running hub with eviction churn, sampling the
hub's total memory (main + workers, PSS) over time. Flat is the goal.

    .venv/bin/python bench/soak.py --minutes 5                # real demos
    .venv/bin/python bench/soak.py --test-demos --minutes 2   # numpy test demos, heavy churn

Bounded in time and count; talks only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import psutil  # noqa: E402
from gradio_client import handle_file  # noqa: E402

from support import SHARED_DATA, TEST_DEMOS, start_hub  # noqa: E402


def footprint(pid: int) -> tuple[int, int]:
    """(hub process PSS, hub + workers PSS) in bytes."""
    main = psutil.Process(pid)
    own = main.memory_full_info().pss
    total = own
    for child in main.children(recursive=True):
        try:
            total += child.memory_full_info().pss
        except psutil.NoSuchProcess:
            pass
    return own, total


def requests_for(test_demos: bool):
    if test_demos:
        return [("/alpha", ('{"value": 1}',)), ("/beta", ('{"value": 2}',))]
    images = SHARED_DATA / "images"
    return [
        ("/questions", ("How far is the Moon from the Earth?",)),
        ("/cassava", (handle_file(str(images / "cassava_2.jpg")),)),
        ("/questions", ("Who painted the Mona Lisa?",)),
        ("/durian", (handle_file(str(images / "durian_1.jpg")),)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--max-requests", type=int, default=20_000)
    parser.add_argument("--max-models", type=int, default=2, help="low to force eviction churn")
    parser.add_argument("--test-demos", action="store_true")
    args = parser.parse_args()

    hub_args = ["--max-models", str(args.max_models), "--idle-ttl", "0"]
    if args.test_demos:
        hub_args += ["--demos-dir", str(TEST_DEMOS), "--max-models", "1"]
    hub = start_hub(*hub_args, timeout=120)
    client = hub.client()
    calls = requests_for(args.test_demos)
    samples: list[tuple[float, int, int, int]] = []
    errors = 0
    started = time.monotonic()
    deadline = started + args.minutes * 60
    next_sample = started
    try:
        for n, (api, inputs) in enumerate(itertools.cycle(calls)):
            if n >= args.max_requests or time.monotonic() > deadline:
                break
            try:
                client.predict(*inputs, api_name=api)
            except Exception as exc:  # noqa: BLE001 - counted, the soak goes on
                errors += 1
                print(f"error on {api}: {exc}", file=sys.stderr)
            if time.monotonic() >= next_sample:
                own, total = footprint(hub.pid)
                samples.append((time.monotonic() - started, n + 1, own, total))
                next_sample += 10
        metrics = hub.get("/metrics")[1]
    finally:
        hub.stop()

    print("   t(s)  requests  hub MiB  hub+workers MiB")
    for t, n, own, total in samples:
        print(f"{t:7.0f} {n:9d} {own / 2**20:8.1f} {total / 2**20:16.1f}")
    evictions = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                    if line.startswith("demohub_evictions_total{"))
    loads = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                if line.startswith("demohub_loads_total{"))
    if len(samples) >= 4:
        half = len(samples) // 2
        early = max(s[2] for s in samples[1:half]) / 2**20
        late = max(s[2] for s in samples[half:]) / 2**20
        print(f"hub process PSS, max of first half {early:.1f} MiB vs second half {late:.1f} MiB "
              f"(drift {late - early:+.1f} MiB)")
    print(json.dumps({"requests": samples[-1][1] if samples else 0, "errors": errors,
                      "loads": loads, "evictions": evictions}))


if __name__ == "__main__":
    main()
