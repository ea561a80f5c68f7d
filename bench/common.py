"""Small helpers every bench script shares: timestamped progress, a loopback
port, and nearest-rank percentiles."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

#: A bench's clients all come from 127.0.0.1 and stand for many visitors: the hubs a bench
#: script starts (its children inherit this) have no per-visitor limit (demohub.web.fair) unless
#: the run sets one. Only for a script of bench/ itself, not a test that imports one.
if Path(sys.argv[0]).resolve().parent == Path(__file__).resolve().parent:
    os.environ.setdefault("HUB_PER_CLIENT_QUEUE", "0")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


def log_events(log_path) -> list[dict]:
    """The JSON event lines of a hub's log (demohub.events), in order."""
    import json
    from pathlib import Path

    out = []
    for line in Path(log_path).read_text(errors="replace").splitlines():
        if line.startswith('{"ts"'):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out
