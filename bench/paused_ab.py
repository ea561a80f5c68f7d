"""Several apps side by side, only one awake at a time: A/B figures on a noisy machine.

Every variant (a hub with its own code, environment and flags, or the
one-process app) is started once and loaded; then all but one are paused with
SIGSTOP (the whole process tree), and the awake one is measured for a block:
warm calls one at a time (plain HTTP API), the page faults each of its
processes took per call, and optionally a mixed 8-client stream.
Blocks alternate (A B C, C B A, ...), so a drift in the machine's speed falls on
every variant alike: separate runs of bench/vs_baseline.py differ by 10 % and
more on a shared 2-core machine, too much to tell two settings apart.

    .venv/bin/python bench/paused_ab.py --variant baseline --variant "main" \\
        --variant "passive|OMP_WAIT_POLICY=PASSIVE"
    .venv/bin/python bench/paused_ab.py --variant "before||--start-method template|/tmp/old" --variant now \\
        --stream 30 --blocks 3

A variant is LABEL[|ENV=V,ENV=V[|HUB ARGS[|ROOT]]]: a label starting with
"baseline" is bench/baseline_app.py (of ROOT), any other a hub.py of ROOT (this
checkout by default) with `--max-models 4 --idle-ttl 0` (every demo loaded) and the given flags.
The first variant is the reference of the ratios. A hub's own timers see the
paused time as a jump; a hub with `--idle-ttl 0` does nothing with it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import free_port, log, percentile  # noqa: E402
from vs_baseline import (DEMOS, MIX, PYTHON, REQUEST_TIMEOUT_S, ROOT, Inputs, Server,  # noqa: E402
                         http_predict, mixed_stream, timed, tree_memory)


def parse_mix(text: str) -> dict[str, float]:
    """`questions=1` or `questions=0.6,cassava=0.4`: the stream's demos and their weights."""
    mix = {}
    for part in text.split(","):
        demo, _, weight = part.partition("=")
        if demo not in DEMOS:
            raise argparse.ArgumentTypeError(f"{demo!r} is not one of {', '.join(DEMOS)}")
        try:
            mix[demo] = float(weight or 1)
        except ValueError:
            raise argparse.ArgumentTypeError(f"the weight of {demo} must be a number, not {weight!r}") from None
    if not any(w > 0 for w in mix.values()):
        raise argparse.ArgumentTypeError("give at least one demo a weight above 0")
    return mix


@dataclass(frozen=True)
class Variant:
    label: str
    env: dict[str, str]
    hub_args: list[str]
    root: Path

    @classmethod
    def parse(cls, text: str, default_root: Path) -> "Variant":
        label, envs, args, root = (text.split("|") + ["", "", ""])[:4]
        env = dict(kv.split("=", 1) for kv in envs.split(",") if kv)
        return cls(label, env, args.split(), Path(root) if root else default_root)

    def command(self, port: int, cache_dir: Path) -> list[str]:
        if self.label.startswith("baseline"):
            return [PYTHON, str(ROOT / "bench" / "baseline_app.py"), "--port", str(port), "--root", str(self.root),
                    "--cache-dir", str(cache_dir)]
        return [PYTHON, str(self.root / "hub.py"), "--host", "127.0.0.1", "--port", str(port), "--cache-dir",
                str(cache_dir), "--max-models", "4", "--idle-ttl", "0", *self.hub_args]


def counters(server: Server) -> dict[str, int]:
    """Minor page faults so far per process name, each summed over its threads."""
    out: dict[str, int] = {}
    for proc in server.processes():
        try:
            name = proc.name()
            faults = int(Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[7])
        except (psutil.NoSuchProcess, FileNotFoundError, IndexError, ProcessLookupError):
            continue
        out[name] = out.get(name, 0) + faults
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", required=True, help="LABEL[|ENV=V,..[|HUB ARGS[|ROOT]]]")
    parser.add_argument("--demos", default=",".join(DEMOS))
    parser.add_argument("--blocks", type=int, default=6, help="warm blocks per variant (5 calls per demo each)")
    parser.add_argument("--stream", type=float, default=0.0, help="seconds of mixed stream per block (0: none)")
    parser.add_argument("--stream-blocks", type=int, default=3)
    parser.add_argument("--mix", type=parse_mix, default=MIX, metavar="DEMO=WEIGHT,...",
                        help="the stream's demos and weights (default: vs_baseline's 60/20/20 mix); "
                             "e.g. questions=1 for a stream of one demo")
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache")
    args = parser.parse_args(argv)
    variants = [Variant.parse(v, args.root) for v in args.variant]
    demos = [d for d in args.demos.split(",") if d]
    workdir = Path(tempfile.mkdtemp(prefix="paused-ab-"))
    servers: dict[str, Server] = {}
    times: dict[tuple[str, str], list[float]] = {}
    faults: dict[tuple[str, str], dict[str, list[float]]] = {}
    streams: dict[str, list[dict]] = {}
    #: each variant's process tree, every model loaded: once all are loaded (paused), and at the end.
    #: Read while every variant runs, so pages two trees share (libraries in the page cache)
    #: split their PSS alike; USS counts only each tree's own.
    memory: dict[str, list[dict[str, int]]] = {}
    try:
        for i, v in enumerate(variants):
            env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False",
                   "GRADIO_TEMP_DIR": str(workdir / f"gradio-{i}"), **v.env}
            port = free_port()
            servers[v.label] = Server(v.label, v.command(port, args.cache_dir), v.root, env,
                                      workdir / f"{i}.log", port)
        inputs = Inputs()
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
            for server in servers.values():
                server.wait_page()
                for _ in range(2):  # load, then warm, every model measured
                    for demo in demos:
                        http_predict(http, server.url, demo, inputs.next(demo))
                server.pause()
            labels = list(servers)
            for label, server in servers.items():
                memory.setdefault(label, []).append(tree_memory(server.pid))

            def awake(label: str, measure) -> None:
                with servers[label].awake() as server:
                    measure(server)

            def warm(server: Server) -> None:
                for demo in demos:
                    http_predict(http, server.url, demo, inputs.next(demo))  # wakes a resting queue
                    before = counters(server)
                    for _ in range(5):
                        times.setdefault((demo, server.name), []).append(
                            timed(lambda: http_predict(http, server.url, demo, inputs.next(demo))))
                    after = counters(server)
                    per = faults.setdefault((demo, server.name), {})
                    for name, count in after.items():
                        per.setdefault(name, []).append((count - before.get(name, count)) / 5)

            def stream(server: Server, seed: int) -> None:
                mixed_stream(server.url, server.pid, 6.0, seed=99, mix=args.mix)  # warm-up (and extra copies)
                result = mixed_stream(server.url, server.pid, args.stream, seed=seed, mix=args.mix)
                streams.setdefault(server.name, []).append(result)
                log(f"{server.name}: {result['answers_per_s']:.2f} answers/s, "
                    f"{result['cpu_s_per_answer'] * 1000:.1f} CPU-ms each, {len(result['errors'])} errors")

            for block in range(args.blocks):
                for label in (labels if block % 2 == 0 else labels[::-1]):
                    awake(label, warm)
            log("warm blocks done")
            if args.stream:
                for block in range(args.stream_blocks):
                    for label in (labels if block % 2 == 0 else labels[::-1]):
                        awake(label, lambda server, b=block: stream(server, b))
        for server in servers.values():
            server.resume()
        for label, server in servers.items():
            memory[label].append(tree_memory(server.pid))
        report(labels, demos, times, faults, streams, memory)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)  # made above: this run's logs and temp folders
    return 0


def report(labels, demos, times, faults, streams, memory) -> None:
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    print(f"\n| variant | all loaded: PSS / RSS / USS (MiB), after loading -> at the end | PSS / {labels[0]} |")
    print("|---|---|---|")
    ref = statistics.mean(m["pss"] for m in memory[labels[0]])
    for label in labels:
        cells = " -> ".join(" / ".join(f"{m[k] / 2**20:.0f}" for k in ("pss", "rss", "uss")) for m in memory[label])
        print(f"| {label} | {cells} | **{statistics.mean(m['pss'] for m in memory[label]) / ref:.2f}** |")
    print(f"\n| demo | variant | warm HTTP p10 / p50 / p90 (ms) | p50 / {labels[0]} | page faults per call, by process |")
    print("|---|---|---|---|---|")
    for demo in demos:
        ref = statistics.median(times[(demo, labels[0])])
        for label in labels:
            v = times[(demo, label)]
            per = faults.get((demo, label), {})
            shown = ", ".join(f"{name} {statistics.median(xs):.0f}" for name, xs in sorted(per.items()))
            cells = " / ".join(f"{percentile(v, q) * 1000:.1f}" for q in (0.1, 0.5, 0.9))
            print(f"| {demo} | {label} | {cells} | **{statistics.median(v) / ref:.2f}** | {shown} |")
    if streams:
        ref_aps = statistics.median(r["answers_per_s"] for r in streams[labels[0]])
        ref_cpu = statistics.median(r["cpu_s_per_answer"] for r in streams[labels[0]])
        print(f"\n| variant | answers/s, median (min-max) | / {labels[0]} | CPU-ms per answer | / {labels[0]} "
              "| stream p50 per demo (s) | errors |")
        print("|---|---|---|---|---|---|---|")
        for label in labels:
            rs = streams[label]
            aps = [r["answers_per_s"] for r in rs]
            cpu = [r["cpu_s_per_answer"] for r in rs]
            p50 = " / ".join(f"{d} {statistics.median(r['per_demo'][d]['p50'] for r in rs):.3f}"
                             for d in DEMOS if d in rs[0]["per_demo"])
            print(f"| {label} | {statistics.median(aps):.2f} ({min(aps):.2f}-{max(aps):.2f}) | "
                  f"**{statistics.median(aps) / ref_aps:.2f}** | {statistics.median(cpu) * 1000:.1f} "
                  f"({min(cpu) * 1000:.1f}-{max(cpu) * 1000:.1f}) | **{statistics.median(cpu) / ref_cpu:.2f}** | "
                  f"{p50} | {sum(len(r['errors']) for r in rs)} |")


if __name__ == "__main__":
    sys.exit(main())
