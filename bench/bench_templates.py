"""Spawn against template start methods, side by side in one run: the hub with
`--start-method spawn` and with `--start-method template`, alternated round by
round (spawn first in even rounds, template first in odd ones).

    .venv/bin/python bench/bench_templates.py                 # 2 rounds, ~12 min on 2 busy cores
    .venv/bin/python bench/bench_templates.py --rounds 1 --json /tmp/templates.json

Each hub run (the real hub.py and demos, 127.0.0.1, ended by PID):
1. idle: the page is served, no model loaded: the process tree's PSS;
2. first answer per demo on a fresh hub (a template starts on its family's
   first request: its import is paid here);
3. everything loaded: tree PSS/RSS, warm latency (median of 5 calls per demo),
   idle CPU of the tree over `--idle-seconds`;
4. models evicted by the idle TTL (templates stay, `--template-ttl` is longer):
   each demo loaded again, one at a time: the worker's own load time (from the
   hub's `load` event) and the first answer seen by the client -- for the
   template method this is a cold load with a warm template;
5. everything ended, templates included (their TTL): tree PSS against step 1.

Requests go through Gradio's HTTP API with the same inputs bench/vs_baseline.py uses.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_baseline import (DEMOS, REQUEST_TIMEOUT_S, ROOT, Inputs, Server, free_port, http_predict,  # noqa: E402
                         log, timed, tree_cpu, tree_memory)
from common import log_events  # noqa: E402

IDLE_TTL_S = 20.0
TEMPLATE_TTL_S = 40.0
METHODS = ("spawn", "template")


def hub_events(server: Server) -> list[dict]:
    return log_events(server.log_path)


def wait_for(check, timeout: float, step: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


def children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def workers(pid: int) -> list[psutil.Process]:
    """The hub's model workers (spawned `demohub.backends.local.worker` or forked `w:<demo>`), not templates."""
    out = []
    for child in children(pid):
        try:
            if child.name().startswith("w:") or "demohub.backends.local.worker" in " ".join(child.cmdline()):
                out.append(child)
        except psutil.NoSuchProcess:
            pass
    return out


def run_hub(method: str, args: argparse.Namespace, workdir: Path, inputs: Inputs) -> dict[str, Any]:
    port = free_port()
    cmd = [sys.executable, str(ROOT / "hub.py"), "--host", "127.0.0.1", "--port", str(port),
           "--cache-dir", str(args.cache_dir), "--max-models", "3", "--idle-ttl", str(IDLE_TTL_S),
           "--start-method", method, "--template-ttl", str(TEMPLATE_TTL_S)]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(workdir / f"gradio-{method}")}
    server = Server(method, cmd, ROOT, env, workdir / f"{method}-{port}.log", port)
    out: dict[str, Any] = {"method": method}
    try:
        server.wait_page()
        time.sleep(2)
        out["idle_pss"] = tree_memory(server.pid)["pss"]
        out["idle_unique"] = tree_unique(server.pid)
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
            out["first_answer_s"] = {d: timed(lambda d=d: http_predict(http, server.url, d, inputs.next(d)))
                                     for d in DEMOS}
            out["warm_s"] = {d: statistics.median(timed(lambda d=d: http_predict(http, server.url, d, inputs.next(d)))
                                                  for _ in range(5)) for d in DEMOS}
            server.remember_children()
            out.update(measure_loaded(server.pid, args.idle_seconds))
            log(f"{method}: first answers {fmt_s(out['first_answer_s'])}; loaded PSS {mib(out['loaded_pss'])}; "
                f"idle CPU {out['idle_cpu'] * 100:.1f} %")
            if not wait_for(lambda: not workers(server.pid), IDLE_TTL_S + 30):
                raise RuntimeError(f"{method}: workers were not evicted:\n{server.log_tail()}")
            out["evicted_pss"] = tree_memory(server.pid)["pss"]  # templates (if any) still up
            out["reload_answer_s"], out["reload_load_s"] = {}, {}
            for demo in DEMOS:
                seen = len(hub_events(server))
                out["reload_answer_s"][demo] = timed(lambda: http_predict(http, server.url, demo, inputs.next(demo)))
                loads = [e for e in hub_events(server)[seen:] if e["event"] == "load" and e["model"] == demo]
                out["reload_load_s"][demo] = loads[-1]["seconds"] if loads else None
                out.setdefault("reload_where", {})[demo] = loads[-1].get("where") if loads else None
            server.remember_children()
            log(f"{method}: reloads: load {fmt_s(out['reload_load_s'])}, first answer {fmt_s(out['reload_answer_s'])}")
        if not wait_for(lambda: not children(server.pid), IDLE_TTL_S + TEMPLATE_TTL_S + 40):
            raise RuntimeError(f"{method}: processes left: {[p.name() for p in children(server.pid)]}")
        time.sleep(1)
        out["after_pss"] = tree_memory(server.pid)["pss"]
        out["after_unique"] = tree_unique(server.pid)
        log(f"{method}: idle {mib(out['idle_pss'])} -> all ended {mib(out['after_pss'])}")
        out["loadavg"] = os.getloadavg()[0]
    finally:
        server.stop()
    return out


def unique_bytes(pids: list[int]) -> int:
    """Physical memory the processes really hold together: the distinct resident
    pages of all of them (page frame numbers from /proc/PID/pagemap; needs root).
    Unlike PSS it does not depend on other processes on the machine: PSS splits
    a shared library's pages with every process that maps it, and other people's
    torch processes on a shared machine lower ours. Returns 0 without root."""
    import numpy as np

    frames = []
    present, pfn_mask = np.uint64(1 << 63), np.uint64((1 << 55) - 1)
    for pid in pids:
        try:
            fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
        except OSError:
            continue
        try:
            with open(f"/proc/{pid}/smaps") as smaps:
                rng = None
                for line in smaps:
                    first = line.split(None, 1)[0]
                    if not first.endswith(":"):
                        rng = [int(x, 16) for x in first.split("-")]
                    elif first == "Rss:" and rng and int(line.split()[1]) > 0:
                        start, end = rng
                        data = os.pread(fd, (end - start) // 4096 * 8, start // 4096 * 8)
                        entries = np.frombuffer(data, dtype=np.uint64)
                        frames.append(entries[(entries & present) != 0] & pfn_mask)
        except OSError:
            pass  # the process ended while we read it
        finally:
            os.close(fd)
    if not frames:
        return 0
    pfns = np.unique(np.concatenate(frames))
    return 0 if len(pfns) <= 1 else len(pfns) * 4096  # all zero: no root, no frame numbers


def tree_unique(pid: int) -> int:
    return unique_bytes([pid] + [c.pid for c in children(pid)])


def measure_loaded(pid: int, idle_seconds: float) -> dict:
    """With every model loaded: the tree's memory, then its CPU while idle."""
    time.sleep(2)
    mem = tree_memory(pid)
    out = {"loaded_pss": mem["pss"], "loaded_rss": mem["rss"], "processes": mem["processes"],
           "loaded_unique": tree_unique(pid)}
    cpu = tree_cpu(pid)
    started = time.perf_counter()
    time.sleep(idle_seconds)
    out["idle_cpu"] = (tree_cpu(pid) - cpu) / (time.perf_counter() - started)
    return out


def run_baseline(args: argparse.Namespace, workdir: Path, inputs: Inputs) -> dict[str, Any]:
    """The one-process app (bench/baseline_app.py, every model loaded at startup):
    the same loaded-state figures, for the memory target."""
    port = free_port()
    cmd = [sys.executable, str(ROOT / "bench" / "baseline_app.py"), "--port", str(port), "--root", str(ROOT),
           "--cache-dir", str(args.cache_dir)]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(workdir / "gradio-baseline")}
    server = Server("baseline", cmd, ROOT, env, workdir / f"baseline-{port}.log", port)
    out: dict[str, Any] = {"method": "baseline"}
    try:
        server.wait_page()
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
            for demo in DEMOS:
                http_predict(http, server.url, demo, inputs.next(demo))
            out["warm_s"] = {d: statistics.median(timed(lambda d=d: http_predict(http, server.url, d, inputs.next(d)))
                                                  for _ in range(5)) for d in DEMOS}
        out.update(measure_loaded(server.pid, args.idle_seconds))
        log(f"baseline: loaded PSS {mib(out['loaded_pss'])}, unique {mib(out['loaded_unique'])}; "
            f"idle CPU {out['idle_cpu'] * 100:.1f} %")
    finally:
        server.stop()
    return out


def mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def fmt_s(values: dict[str, float | None]) -> str:
    return ", ".join(f"{k} {v:.2f} s" if v is not None else f"{k} -" for k, v in values.items())


def span(values: list[float]) -> str:
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return f"{lo:.2f}" if abs(hi - lo) < 0.005 else f"{lo:.2f}-{hi:.2f}"


def table(runs: list[dict]) -> str:
    """Template figures, spawn figures and template/spawn ratios (min-max over rounds)."""
    by_round: dict[int, dict[str, dict]] = {}
    for run in runs:
        by_round.setdefault(run["round"], {})[run["method"]] = run
    rounds = [r for r in by_round.values() if set(METHODS) <= set(r)]
    rows: list[tuple[str, Any]] = []
    for demo in DEMOS:
        rows.append((f"cold load, warm template: {demo} (worker load s)", lambda r, d=demo: r["reload_load_s"][d]))
        rows.append((f"cold load, warm template: {demo} (first answer s)", lambda r, d=demo: r["reload_answer_s"][d]))
    for demo in DEMOS:
        rows.append((f"first answer on a fresh hub: {demo} (s)", lambda r, d=demo: r["first_answer_s"][d]))
    for demo in DEMOS:
        rows.append((f"warm latency: {demo} (ms)", lambda r, d=demo: r["warm_s"][d] * 1000))
    rows += [
        ("tree PSS, idle hub (MiB)", lambda r: r["idle_pss"] / 2**20),
        ("tree PSS, all three loaded (MiB)", lambda r: r["loaded_pss"] / 2**20),
        ("tree RSS, all three loaded (MiB)", lambda r: r["loaded_rss"] / 2**20),
        ("tree distinct resident pages, all loaded (MiB)", lambda r: r["loaded_unique"] / 2**20),
        ("idle CPU, all loaded (% of a core)", lambda r: r["idle_cpu"] * 100),
        ("tree PSS after everything ended minus idle (MiB)", lambda r: (r["after_pss"] - r["idle_pss"]) / 2**20),
        ("distinct pages after everything ended minus idle (MiB)",
         lambda r: (r["after_unique"] - r["idle_unique"]) / 2**20),
    ]
    has_base = all("baseline" in r for r in rounds)
    head = "| figure | template | spawn | template / spawn |"
    if has_base:
        head += " baseline | template / baseline | spawn / baseline |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for label, get in rows:
        cells = []
        values = {m: [value(get, r[m]) for r in rounds] for m in ("template", "spawn", "baseline") if m in rounds[0]}
        for m in ("template", "spawn"):
            cells.append(span([x for x in values[m] if x is not None]))
        cells.append(ratio_span(values["template"], values["spawn"]))
        if has_base:
            cells.append(span([x for x in values["baseline"] if x is not None]))
            cells.append(ratio_span(values["template"], values["baseline"]))
            cells.append(ratio_span(values["spawn"], values["baseline"]))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def value(get, run: dict) -> float | None:
    try:
        return get(run)
    except (KeyError, TypeError):
        return None  # a figure the baseline does not have (reloads, eviction)


def ratio_span(a: list[float | None], b: list[float | None]) -> str:
    return span([x / y for x, y in zip(a, b) if x is not None and y])


# -- --cpu: how workers wait for work (OpenMP wait policy), side by side ------------------------

WAIT_SETTINGS = {
    "default": {},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin10k": {"GOMP_SPINCOUNT": "10000"},
}


def run_cpu(setting: str, args: argparse.Namespace, workdir: Path, seed: int) -> dict[str, Any]:
    """One app: "baseline" (bench/baseline_app.py), or "METHOD:WAIT" (the hub with
    `--start-method METHOD`, its workers' OpenMP env from WAIT_SETTINGS[WAIT]):
    warm latency, idle CPU with all loaded, then the 8-client mixed stream."""
    from vs_baseline import mixed_stream

    port = free_port()
    if setting == "baseline":
        cmd = [sys.executable, str(ROOT / "bench" / "baseline_app.py"), "--port", str(port), "--root", str(ROOT),
               "--cache-dir", str(args.cache_dir)]
        extra: dict[str, str] = {}
    else:
        method, _, wait = setting.partition(":")
        cmd = [sys.executable, str(ROOT / "hub.py"), "--host", "127.0.0.1", "--port", str(port),
               "--cache-dir", str(args.cache_dir), "--max-models", "3", "--idle-ttl", "0",
               "--start-method", method]
        extra = WAIT_SETTINGS[wait or "default"]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False",
           "GRADIO_TEMP_DIR": str(workdir / f"gradio-{setting.replace(':', '-')}"), **extra}
    server = Server(setting, cmd, ROOT, env, workdir / f"cpu-{setting.replace(':', '-')}-{port}.log", port)
    inputs = Inputs()
    out: dict[str, Any] = {"setting": setting}
    try:
        server.wait_page()
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
            for _ in range(2):
                for demo in DEMOS:
                    http_predict(http, server.url, demo, inputs.next(demo))
            out["warm_s"] = {d: statistics.median(timed(lambda d=d: http_predict(http, server.url, d, inputs.next(d)))
                                                  for _ in range(args.warm_calls)) for d in DEMOS}
        server.remember_children()
        time.sleep(2)
        cpu = tree_cpu(server.pid)
        started = time.perf_counter()
        time.sleep(args.idle_seconds)
        out["idle_cpu"] = (tree_cpu(server.pid) - cpu) / (time.perf_counter() - started)
        tp = mixed_stream(server.url, server.pid, args.throughput_seconds, seed)
        out.update(answers_per_s=tp["answers_per_s"], cpu_s_per_answer=tp["cpu_s_per_answer"],
                   errors=len(tp["errors"]), loadavg=os.getloadavg()[0])
        log(f"{setting}: warm {fmt_s(out['warm_s'])}; idle CPU {out['idle_cpu'] * 100:.1f} %; "
            f"mixed {tp['answers_per_s']:.2f}/s, {tp['cpu_s_per_answer']:.2f} CPU-s each, {len(tp['errors'])} errors")
    finally:
        server.stop()
    return out


def cpu_table(runs: list[dict]) -> str:
    """Each setting's figures (min-max over rounds) and its ratio to the baseline in the same round."""
    rows = [("mixed throughput (answers/s)", lambda r: r["answers_per_s"]),
            ("CPU-s per answer", lambda r: r["cpu_s_per_answer"]),
            ("idle CPU, all loaded (% of a core)", lambda r: r["idle_cpu"] * 100)]
    rows += [(f"warm latency {d} (ms)", lambda r, d=d: r["warm_s"][d] * 1000) for d in DEMOS]
    settings = list(dict.fromkeys(r["setting"] for r in runs))
    by_round: dict[int, dict[str, dict]] = {}
    for run in runs:
        by_round.setdefault(run["round"], {})[run["setting"]] = run
    head = " | ".join(f"{s} | {s} / baseline" for s in settings)
    lines = [f"| figure | {head} |", "|---" * (1 + 2 * len(settings)) + "|"]
    for label, get in rows:
        cells = []
        for setting in settings:
            values = [get(r[setting]) for r in by_round.values() if setting in r]
            ratios = [get(r[setting]) / get(r["baseline"]) for r in by_round.values()
                      if setting in r and "baseline" in r and get(r["baseline"])]
            cells += [span(values), span(ratios)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache",
                        help="where placeholder models are built (shared with the other benches)")
    parser.add_argument("--json", type=Path, help="also write every raw figure here")
    parser.add_argument("--baseline", action="store_true",
                        help="also run the one-process app (bench/baseline_app.py) each round")
    parser.add_argument("--cpu", action="store_true",
                        help="compare the workers' OpenMP wait settings instead (WAIT_SETTINGS)")
    parser.add_argument("--settings", default="baseline,template:default,template:passive,spawn:default",
                        help="with --cpu: the apps, in order: baseline or METHOD:WAIT (WAIT from WAIT_SETTINGS)")
    parser.add_argument("--throughput-seconds", type=float, default=45.0)
    parser.add_argument("--warm-calls", type=int, default=7)
    args = parser.parse_args(argv)
    started = dt.datetime.now(dt.timezone.utc)
    runs = []
    if args.cpu:
        settings = [s.strip() for s in args.settings.split(",")]
        with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
            for index in range(args.rounds):
                order = settings if index % 2 == 0 else settings[::-1]
                for setting in order:
                    run = run_cpu(setting, args, Path(tmp), seed=index)
                    run["round"] = index
                    runs.append(run)
        print(f"bench_templates --cpu: {args.rounds} round(s), {started:%Y-%m-%d %H:%M} UTC, "
              f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
        print(cpu_table(runs))
        if args.json:
            args.json.write_text(json.dumps(runs, indent=1, default=str))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-templates-") as tmp:
        workdir = Path(tmp)
        for index in range(args.rounds):
            order = METHODS if index % 2 == 0 else METHODS[::-1]
            if args.baseline:
                order = (*order, "baseline") if index % 2 == 0 else ("baseline", *order)
            for method in order:
                run = (run_baseline(args, workdir, Inputs()) if method == "baseline"
                       else run_hub(method, args, workdir, Inputs()))
                run["round"] = index
                runs.append(run)
    print(f"bench_templates: {args.rounds} round(s), {started:%Y-%m-%d %H:%M} UTC, "
          f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print(table(runs))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
