"""Which model to evict under a kill storm: least recently used against cost.

The stream of issue 29: bench/abuse_soak.py on the real demos (questions,
cassava, durian), 8 clients, `--max-models 2`, a worker of the hub sent
SIGKILL or SIGSTOP every 30 s, hostile inputs in between. Run once with
`--eviction lru` (the rule before issue 29) and once with `--eviction cost`
(GreedyDual-Size-Frequency over measured reload times, with a short stay after
a load: demohub/policy.py), alternated, `--rounds` times each, in one run so
both see the same machine.

    .venv/bin/python bench/bench_eviction.py --minutes 3 --rounds 2

Prints, per run: answers served, clear errors, loads per model, evictions,
and each demo's median and p95 answer time; then the min-max per rule.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench")]

import abuse_soak  # noqa: E402


def one(rule: str, minutes: float, fault_every: float, seed: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="eviction-cache-") as cache:
        settings = abuse_soak.Settings(seconds=minutes * 60, clients=8, fault_every_s=fault_every,
                                       hostile_every_s=2.0, cache_dir=Path(cache), seed=seed, verbose=False,
                                       hub_args=("--eviction", rule))
        report = abuse_soak.run(settings)
    latency = {case: report.latency_s[case] for case in sorted(report.latency_s) if not case.startswith("hostile")}
    return {"rule": rule, "ok": report.ok, "clear_errors": report.clear_errors,
            "unclear_errors": report.unclear_errors, "hung": report.hung, "loads": report.loads,
            "evictions": report.evictions, "latency_s": latency, "faults": len(report.faults),
            "must_be_zero": report.failures()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0, help="length of each run")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each rule, alternated")
    parser.add_argument("--fault-every", type=float, default=30.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    runs = []
    for round_ in range(args.rounds):
        for rule in (("lru", "cost") if round_ % 2 == 0 else ("cost", "lru")):
            run = one(rule, args.minutes, args.fault_every, seed=round_)
            runs.append(run)
            loads = ", ".join(f"{k} {v:.0f}" for k, v in sorted(run["loads"].items()))
            print(f"{rule:4}  ok {run['ok']:5}  clear errors {run['clear_errors']:4}  loads: {loads}  "
                  f"evictions {sum(run['evictions'].values()):.0f}  must be 0: {run['must_be_zero'] or 'all 0'}",
                  flush=True)
            for case, lat in run["latency_s"].items():
                print(f"        {case:24} n {lat['n']:5}  median {lat['median']:6.2f} s  p95 {lat['p95']:6.2f} s")
    print("\nmin-max over runs:")
    for rule in ("lru", "cost"):
        mine = [r for r in runs if r["rule"] == rule]
        ok = [r["ok"] for r in mine]
        loads = [sum(r["loads"].values()) for r in mine]
        print(f"{rule:4}  answers {min(ok)}-{max(ok)}  loads {min(loads):.0f}-{max(loads):.0f}")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
