"""Cold loads with a warm template, two checkouts side by side in one run.

    .venv/bin/python bench/bench_cold_load.py --root /tmp/before --root . --demo durian --rounds 12

For each `--root` (a checkout of this repo: its `demohub/` and `demos/`), a driver
process builds that checkout's TemplateBackend with its templates started, then
waits for orders. The loads alternate between the checkouts, one at a time (the
order flips every round, so a drifting machine costs both the same), and each is
a real worker forked from the warm template: load the model, answer one
request, then `--warm-calls` more, stop. The figure is the worker's own load
time (what the hub logs as `load` seconds, and what the issue's cold-load
targets are about), beside the first answer and the median warm prediction
(time inside the runtime's predict), so a faster load that made every call
slower would show.

The drivers point `HUB_CACHE_DIR` at `--cache-dir`, as the hub does, after
removing what runtimes derived there before (`derived/`): the first round is
the first load of each model on this machine (a runtime that keeps something
for later workers, like durian's traced graph, pays for storing it there) and
is reported apart; the rounds after it are what a cold load costs from then on
(after an eviction, a crash or a restart). Placeholder folders live under
`--cache-dir` too, shared by both checkouts, so both load the same weights.
Every process is ended by PID.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import log  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED_IMAGES = ROOT.parent / "shared" / "data" / "images"
REQUESTS = {
    "cassava": {"image": str(SHARED_IMAGES / "cassava_1.jpg")},
    "durian": {"image": str(SHARED_IMAGES / "durian_1.jpg")},
    "questions": {"text": "Who wrote Hamlet?"},
}
ORDER_TIMEOUT_S = 300.0

#: Runs in each checkout's own interpreter with that checkout first on sys.path;
#: reads one demo name per line, answers one JSON line per load.
DRIVER = r"""
import json, os, sys, time
from pathlib import Path
root, cache, requests, warm_calls = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, str(root))
os.environ["HUB_CACHE_DIR"] = str(cache)  # as hub.py does: what runtimes derive is kept under it
from demohub.backends import usable_cores
from demohub.backends.local.template import TemplateBackend
from demohub.discovery import discover
from demohub.sources import ModelSources

specs = {s.name: s for s in discover(root / "demos")}
sources = ModelSources(list(specs.values()), root / "models", cache / "placeholders", {})
backend = TemplateBackend(specs=list(specs.values()), template_ttl_s=None, prewarm=True)
threads = usable_cores()
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    name = line.strip()
    resolved = sources.resolve(name)
    started = time.perf_counter()
    worker = backend.start(specs[name], resolved.path, placeholder=resolved.placeholder, threads=threads)
    try:
        info = worker.wait_ready(300)
        ready = time.perf_counter()
        worker.call(requests[name], 120, threads=threads)
        answered = time.perf_counter()
        warm = sorted(worker.call(requests[name], 120, threads=threads).seconds for _ in range(warm_calls))
    finally:
        worker.stop()
    print(json.dumps({"load_s": info.seconds, "ready_s": ready - started, "first_answer_s": answered - started,
                      "warm_predict_s": warm[len(warm) // 2]}), flush=True)
backend.close()
"""


class Driver:
    """One checkout's driver process; lives for one run of this script."""

    def __init__(self, root: Path, cache: Path, python: str, warm_calls: int):
        self.root = root
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.proc = subprocess.Popen(
            [python, "-c", DRIVER, str(root), str(cache), json.dumps(REQUESTS), str(warm_calls)], cwd=root, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._answer()

    def _answer(self) -> dict:
        deadline = time.monotonic() + ORDER_TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the driver for {self.root} exited (code {self.proc.poll()})")
            if line.startswith("{"):
                return json.loads(line)
        raise TimeoutError(f"the driver for {self.root} gave no answer in {ORDER_TIMEOUT_S:.0f} s")

    def load(self, demo: str) -> dict:
        self.proc.stdin.write(demo + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(timeout=10)


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, action="append", required=True,
                        help="a checkout to measure (give two: before, then after)")
    parser.add_argument("--demo", action="append", choices=sorted(REQUESTS), help="default: all three")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache" / "cold-load")
    parser.add_argument("--warm-calls", type=int, default=5,
                        help="predictions after the first, per load: their median inside the worker")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--json", type=Path, help="also write every sample here")
    args = parser.parse_args()
    demos = args.demo or sorted(REQUESTS)
    roots = [r.resolve() for r in args.root]
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.cache_dir / "derived", ignore_errors=True)

    started = dt.datetime.now(dt.timezone.utc)
    load_before = os.getloadavg()
    drivers: list[Driver] = []
    samples: dict[str, dict[str, list[dict]]] = {str(r): {d: [] for d in demos} for r in roots}
    first_loads: dict[str, dict[str, dict]] = {str(r): {} for r in roots}
    try:
        for root in roots:
            drivers.append(Driver(root, args.cache_dir, args.python, args.warm_calls))
        for demo in demos:
            for driver in drivers:  # the first load on this machine: placeholders built, pages cached
                first_loads[str(driver.root)][demo] = sample = driver.load(demo)
                log(f"first load {demo} {driver.root}: load {sample['load_s']:.2f} s")
        for n in range(args.rounds):
            order = drivers if n % 2 == 0 else drivers[::-1]
            for demo in demos:
                for driver in order:
                    sample = driver.load(demo)
                    samples[str(driver.root)][demo].append(sample)
                    log(f"round {n + 1}/{args.rounds} {demo} {driver.root}: load {sample['load_s']:.2f} s, "
                        f"first answer {sample['first_answer_s']:.2f} s")
    finally:
        for driver in drivers:
            driver.close()

    print(f"\nCold loads with a warm template, {args.rounds} alternated rounds, "
          f"{started:%Y-%m-%d %H:%M} UTC, load average before {load_before[0]:.2f}; median (min-max), s\n")
    header = "| demo | figure | " + " | ".join(r.name or str(r) for r in roots)
    if len(roots) == 2:
        header += " | last / first, median (min-max of paired rounds)"
    print(header + " |")
    print("|" + "---|" * (header.count("|")))
    for demo in demos:
        for figure in ("load_s", "first_answer_s", "warm_predict_s"):
            series = [[s[figure] for s in samples[str(r)][demo]] for r in roots]
            row = f"| {demo} | {figure} | " + " | ".join(summary(v) for v in series)
            if len(roots) == 2:
                ratios = [b / a for a, b in zip(*series)]
                row += f" | {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
            print(row + " |")
    print("\nThe first load of each model on this machine (empty derived/ folder; one sample each, "
          "after the placeholder was built), s:\n")
    for demo in demos:
        print(f"- {demo}: " + ", ".join(f"{r.name or r} {first_loads[str(r)][demo]['load_s']:.2f}" for r in roots))
    if args.json:
        args.json.write_text(json.dumps({"started": started.isoformat(), "load_before": load_before,
                                         "rounds": args.rounds, "samples": samples, "first_loads": first_loads},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
