"""How much memory a process holds, read cheaply from /proc.

`smaps_rollup` gives PSS and USS (private clean + dirty) in one small read,
where psutil's `memory_full_info` parses the whole `smaps` (~10 ms for a
framework process): the sweeper reads every worker every second, so that
difference was most of the hub's idle CPU.
"""

from __future__ import annotations

import os

MEMORY_METRICS = ("pss", "uss", "rss")

_FIELDS = {"Rss:": "rss", "Pss:": "pss", "Private_Clean:": "uss", "Private_Dirty:": "uss"}


def rollup(pid: int) -> dict[str, int]:
    """{'rss', 'pss', 'uss'} in bytes from /proc/PID/smaps_rollup ({} if gone)."""
    out = {"rss": 0, "pss": 0, "uss": 0}
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            key = _FIELDS.get(parts[0].decode())
            if key:
                out[key] += int(parts[1]) * 1024
    return out


def process_memory(pid: int | None, metric: str = "pss") -> int:
    """Bytes used by one process, by the chosen measure (0 if it is gone)."""
    if pid is None:
        return 0
    if metric not in MEMORY_METRICS:
        raise ValueError(f"unknown memory metric {metric!r}; choose {', '.join(MEMORY_METRICS)}")
    return rollup(pid).get(metric, 0)


def own_memory(metric: str = "pss") -> int:
    return process_memory(os.getpid(), metric)
