"""Where one warm request's time goes, in the hub and in the one-process app, side by side.

bench/vs_baseline.py says whether a single warm request is slower in the hub;
this says in which part of the request: the photo's upload (`POST
/gradio_api/upload`), joining the queue (`POST /gradio_api/call/<demo>`), the
result stream (`GET /gradio_api/call/<demo>/<event>`: the queue, the model, the
outputs' postprocessing) and downloading the output files (the heatmap), as a
browser-less caller makes them.

    .venv/bin/python bench/request_phases.py                           # every demo, 60 calls each
    .venv/bin/python bench/request_phases.py --demos durian --calls 100
    .venv/bin/python bench/request_phases.py --hub-args "--max-models 3 --idle-ttl 0 --start-method spawn"

Both apps start and load every model first (as in vs_baseline's side-by-side
stage); then only one is awake at a time (the other's tree SIGSTOPped) and
they take turns in blocks of `--block` calls per demo, the order flipped each
block, each block after one unmeasured call. Prints, per demo and phase, the
p50 of each app and the hub/app ratio. Servers bind 127.0.0.1, are ended by
PID, and their temp folders are removed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import log  # noqa: E402
from vs_baseline import (DEFAULT_HUB_ARGS, DEMOS, REQUEST_TIMEOUT_S, ROOT, CallFailed, Inputs,  # noqa: E402
                         Server, Settings, loaded_and_paused, timed)

PHASES = ("upload", "join", "result", "download", "total")
APPS = ("hub", "baseline")


def output_urls(stream: str) -> list[str]:
    """The file URLs among the outputs of a finished call's event stream."""
    lines = stream.splitlines()
    if "event: complete" not in lines or lines.index("event: complete") + 1 >= len(lines):
        raise CallFailed(stream.strip()[:300])
    data = json.loads(lines[lines.index("event: complete") + 1].removeprefix("data:"))
    return [item["url"] for item in data if isinstance(item, dict) and item.get("url")]


def phased_call(http: httpx.Client, url: str, demo: str, value: str) -> dict[str, float]:
    """One request, the seconds of each phase (upload 0 for a text input)."""
    times = {"upload": 0.0}
    if demo == "questions":
        data: list[Any] = [value]
    else:
        uploaded: list[str] = []

        def upload() -> None:
            with open(value, "rb") as photo:
                resp = http.post(f"{url}/gradio_api/upload",
                                 files=[("files", (Path(value).name, photo, "image/jpeg"))])
            resp.raise_for_status()
            uploaded.extend(resp.json())

        times["upload"] = timed(upload)
        data = [{"path": uploaded[0], "meta": {"_type": "gradio.FileData"}, "orig_name": Path(value).name}]
    event: list[str] = []

    def join() -> None:
        resp = http.post(f"{url}/gradio_api/call/{demo}", json={"data": data})
        resp.raise_for_status()
        event.append(resp.json()["event_id"])

    times["join"] = timed(join)
    stream: list[str] = []

    def result() -> None:
        resp = http.get(f"{url}/gradio_api/call/{demo}/{event[0]}")
        resp.raise_for_status()
        stream.append(resp.text)

    times["result"] = timed(result)
    urls = output_urls(stream[0])

    def download() -> None:
        for file_url in urls:
            http.get(file_url).raise_for_status()

    times["download"] = timed(download) if urls else 0.0
    times["total"] = sum(times[p] for p in PHASES[:-1])
    return times


def measure(servers: dict[str, Server], demos: list[str], calls: int, block: int,
            inputs: dict[str, Inputs]) -> dict[str, dict[str, list[dict[str, float]]]]:
    """{app: {demo: [phase times per call]}}, the apps taking turns block by block."""
    out: dict[str, dict[str, list[dict[str, float]]]] = {app: {d: [] for d in demos} for app in servers}
    order = tuple(servers)
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
        for index in range(-(-calls // block)):
            n = min(block, calls - index * block)
            for app in (order if index % 2 == 0 else order[::-1]):
                with servers[app].awake() as server:
                    for demo in demos:
                        phased_call(http, server.url, demo, inputs[app].next(demo))  # unmeasured
                        for _ in range(n):
                            out[app][demo].append(phased_call(http, server.url, demo, inputs[app].next(demo)))
    return out


def table(times: dict[str, dict[str, list[dict[str, float]]]], demos: list[str]) -> str:
    lines = ["| demo | phase | hub p50 (ms) | one-process app p50 (ms) | hub / app |", "|---|---|---|---|---|"]
    for demo in demos:
        for phase in PHASES:
            hub = statistics.median(t[phase] for t in times["hub"][demo]) * 1000
            app = statistics.median(t[phase] for t in times["baseline"][demo]) * 1000
            if hub == 0 and app == 0:
                continue
            ratio = f"{hub / app:.2f}" if app else "-"
            lines.append(f"| {demo} | {phase} | {hub:.1f} | {app:.1f} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demos", default=",".join(DEMOS), help="comma-separated (default: all)")
    parser.add_argument("--calls", type=int, default=60, help="measured calls per demo and app")
    parser.add_argument("--block", type=int, default=5, help="calls per demo in one awake block")
    parser.add_argument("--hub-args", default=DEFAULT_HUB_ARGS)
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: <root>/.cache")
    args = parser.parse_args(argv)
    demos = [d for d in args.demos.split(",") if d]
    unknown = sorted(set(demos) - set(DEMOS))
    if unknown or not demos:
        parser.error(f"--demos takes some of {', '.join(DEMOS)}; not {', '.join(unknown) or 'nothing'}")
    if args.calls < 1 or args.block < 1:
        parser.error("--calls and --block must be at least 1")
    workdir = Path(tempfile.mkdtemp(prefix="request-phases-"))
    settings = Settings(rounds=1, warm_calls=args.calls, idle_s=0, throughput_s=0,
                        hub_args=shlex.split(args.hub_args), root=args.root.resolve(),
                        cache_dir=(args.cache_dir or args.root / ".cache").resolve(), workdir=workdir)
    inputs = {app: Inputs() for app in APPS}
    try:
        with loaded_and_paused(APPS, settings, inputs) as servers:
            log("both apps loaded")
            times = measure(servers, demos, args.calls, args.block, inputs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"hub args: {args.hub_args}; {args.calls} calls per demo and app, blocks of {args.block}")
    print(table(times, demos))
    return 0


if __name__ == "__main__":
    sys.exit(main())
