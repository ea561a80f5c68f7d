"""Where a stream's CPU goes, process by process, in the hub and in the one-process app.

bench/vs_baseline.py gives the mixed stream's answers per second and CPU-seconds
per answer of each whole process tree; this splits the hub's figure between its
main process (Gradio, the queue, the registry) and each model's workers, and
runs the stream with any mix of requests, so a ratio can be traced to the kind
of request it comes from.

    .venv/bin/python bench/stream_breakdown.py                                   # the 60/20/20 mix
    .venv/bin/python bench/stream_breakdown.py --mix questions=1 --mix cassava=1,durian=1
    .venv/bin/python bench/stream_breakdown.py --hub-args "--max-models 3 --idle-ttl 0 --start-method spawn"

Both apps start and load every model (as in vs_baseline's side-by-side stage);
then, for each mix, each app runs one unmeasured block and `--blocks` measured
blocks of `--block-seconds`, only one app awake at a time, the order flipped
each block. Each process's CPU-seconds are read before and after every block.
Servers bind 127.0.0.1, are ended by PID, and their temp folders are removed.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import log  # noqa: E402
from vs_baseline import (DEFAULT_HUB_ARGS, DEMOS, MIX, ROOT, Inputs, Settings, cpu_seconds,  # noqa: E402
                         loaded_and_paused, mixed_stream, tree)

APPS = ("hub", "baseline")


def parse_mix(text: str) -> dict[str, float]:
    """'questions=0.6,cassava=0.2' -> {'questions': 0.6, 'cassava': 0.2}."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name not in DEMOS:
            raise ValueError(f"{name!r} is not a demo; choose from {', '.join(DEMOS)}")
        try:
            mix[name] = float(weight or 1)
        except ValueError:
            raise ValueError(f"the weight of {name} must be a number, not {weight!r}") from None
        if mix[name] <= 0:
            raise ValueError(f"the weight of {name} must be positive")
    return mix


def role(proc: psutil.Process, root_pid: int) -> str:
    """'main' for the root; a spawned worker by its runtime (`w:<demo>`, from
    `--runtime demos.<demo>.runtime`); a forked worker or a template by the name
    it gives itself (`w:<model>`, `template:<family>`, cut to 15 characters by the kernel)."""
    if proc.pid == root_pid:
        return "main"
    cmdline = proc.cmdline()
    if "--runtime" in cmdline[:-1]:
        module = cmdline[cmdline.index("--runtime") + 1].split(".")
        return "w:" + (module[-2] if len(module) > 1 and module[-1] == "runtime" else module[-1])
    return proc.name()


def cpu_by_process(root_pid: int) -> dict[tuple[int, str], float]:
    """{(pid, role): CPU-seconds} over the tree."""
    out: dict[tuple[int, str], float] = {}
    for proc in tree(root_pid):
        try:
            out[(proc.pid, role(proc, root_pid))] = cpu_seconds(proc)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return out


def run_mix(servers, mix: dict[str, float], blocks: int, seconds: float, seed: int) -> dict[str, dict]:
    """Per app: answers per demo, measured seconds, and CPU-seconds per role summed over its processes."""
    result = {app: {"answers": Counter(), "seconds": 0.0, "cpu": Counter(), "processes": {}} for app in APPS}
    for block in range(blocks + 1):
        for app in (APPS if block % 2 == 0 else APPS[::-1]):
            with servers[app].awake() as server:
                before = cpu_by_process(server.pid)
                stream = mixed_stream(server.url, server.pid, seconds, seed * 100 + block, mix)
                after = cpu_by_process(server.pid)
            if block == 0:
                continue  # unmeasured: the hub grows its extra copies here
            out = result[app]
            out["seconds"] += stream["seconds"]
            for demo, latencies in stream["latencies"].items():
                out["answers"][demo] += len(latencies)
            for (pid, name), seconds_after in after.items():
                out["cpu"][name] += seconds_after - before.get((pid, name), 0.0)
                out["processes"].setdefault(name, set()).add(pid)
    return result


def report(mix: dict[str, float], result: dict[str, dict]) -> str:
    hub, app = result["hub"], result["baseline"]
    n = {a: sum(result[a]["answers"].values()) for a in APPS}
    cpu = {a: sum(result[a]["cpu"].values()) for a in APPS}
    if not n["hub"] or not n["baseline"]:
        return f"mix {mix}: an app answered nothing; see the log"
    lines = [f"mix {', '.join(f'{d}={w:g}' for d, w in mix.items())}: answers hub {n['hub']} "
             f"({dict(hub['answers'])}), app {n['baseline']} ({dict(app['answers'])}) in "
             f"{hub['seconds']:.0f} s each",
             "",
             "| process | processes | CPU-s | ms per answer of the stream |",
             "|---|---|---|---|"]
    for a, label in (("hub", "hub"), ("baseline", "one-process app")):
        for name, seconds in sorted(result[a]["cpu"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {label}: {name} | {len(result[a]['processes'][name])} | {seconds:.2f} "
                         f"| {seconds / n[a] * 1000:.1f} |")
        lines.append(f"| **{label}, whole tree** | | {cpu[a]:.2f} | **{cpu[a] / n[a] * 1000:.1f}** |")
    answers_ratio = (n["hub"] / hub["seconds"]) / (n["baseline"] / app["seconds"])
    cpu_ratio = (cpu["hub"] / n["hub"]) / (cpu["baseline"] / n["baseline"])
    cores = {a: cpu[a] / result[a]["seconds"] for a in APPS}
    lines += ["", f"hub / app: answers per second **{answers_ratio:.2f}**, CPU per answer **{cpu_ratio:.2f}**, "
                  f"cores used {cores['hub']:.2f} / {cores['baseline']:.2f} = {cores['hub'] / cores['baseline']:.2f}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mix", action="append", default=None,
                        help="demo=weight,... (repeatable; default: vs_baseline's 60/20/20 mix)")
    parser.add_argument("--blocks", type=int, default=4, help="measured awake blocks per app and mix")
    parser.add_argument("--block-seconds", type=float, default=15.0)
    parser.add_argument("--hub-args", default=DEFAULT_HUB_ARGS)
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: <root>/.cache")
    args = parser.parse_args(argv)
    try:
        mixes = [parse_mix(m) for m in args.mix] if args.mix else [dict(MIX)]
    except ValueError as exc:
        parser.error(f"--mix: {exc}")
    if args.blocks < 1 or args.block_seconds <= 0:
        parser.error("--blocks must be at least 1 and --block-seconds positive")
    workdir = Path(tempfile.mkdtemp(prefix="stream-breakdown-"))
    settings = Settings(rounds=1, warm_calls=0, idle_s=0, throughput_s=0,
                        hub_args=shlex.split(args.hub_args), root=args.root.resolve(),
                        cache_dir=(args.cache_dir or args.root / ".cache").resolve(), workdir=workdir)
    inputs = {app: Inputs() for app in APPS}
    reports = []
    try:
        with loaded_and_paused(APPS, settings, inputs) as servers:
            log("both apps loaded")
            for i, mix in enumerate(mixes):
                reports.append(report(mix, run_mix(servers, mix, args.blocks, args.block_seconds, seed=7 + i)))
                log(f"mix {i + 1} of {len(mixes)} done")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"hub args: {args.hub_args}; {args.blocks} awake blocks of {args.block_seconds:g} s per app and mix, "
          "after one unmeasured block each")
    print("\n\n".join(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
