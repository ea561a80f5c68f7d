"""What a new Gradio session costs the hub process: Gradio's `SessionState`
against the hub's `LightSessionState` (demohub/web/sessions.py), built for the hub's
real page (every demo's tab and the Status tab; no model is loaded), alternating
in one process.

    .venv/bin/python bench/bench_sessions.py              # 5 repeats of 200 sessions each
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gradio.state_holder import SessionState  # noqa: E402

from demohub.backends import make_backend  # noqa: E402
from demohub.discovery import discover  # noqa: E402
from demohub.web.history import History  # noqa: E402
from demohub.registry import Registry  # noqa: E402
from demohub.web.sessions import LightSessionState  # noqa: E402
from demohub.sources import ModelSources  # noqa: E402
from demohub.web.ui import build_blocks  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=200)
    args = parser.parse_args(argv)
    specs = discover(ROOT / "demos")
    with tempfile.TemporaryDirectory(prefix="bench-sessions-") as tmp:
        sources = ModelSources(specs, ROOT / "models", Path(tmp), {})
        registry = Registry(specs, sources, backend=make_backend("spawn"))
        blocks = build_blocks(specs, registry, sources, History(registry))
        times: dict[str, list[float]] = {"Gradio's SessionState": [], "LightSessionState": []}
        for r in range(args.repeats):
            order = list(times) if r % 2 == 0 else list(times)[::-1]
            for label in order:
                cls = SessionState if label.startswith("Gradio") else LightSessionState
                started = time.perf_counter()
                for _ in range(args.sessions):
                    cls(blocks)
                times[label].append((time.perf_counter() - started) / args.sessions * 1000)
        registry.close()
    print(f"{len(blocks.blocks)} blocks on the hub's page; {args.repeats} repeats of {args.sessions} sessions\n")
    print("| session | ms per new session, median (min–max) |")
    print("|---|---|")
    for label, values in times.items():
        print(f"| {label} | {statistics.median(values):.3f} ({min(values):.3f}–{max(values):.3f}) |")
    gradio, light = (statistics.median(v) for v in times.values())
    print(f"\nlight / Gradio's: **{light / gradio:.4f}**")
    return 0


if __name__ == "__main__":
    sys.exit(main())
