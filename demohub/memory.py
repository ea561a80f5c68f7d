"""How much memory a process holds, read cheaply from /proc.

`smaps_rollup` gives PSS and USS (private clean + dirty) in one small read,
where psutil's `memory_full_info` parses the whole `smaps` (~10 ms for a
framework process): the sweeper reads every worker every second, so that
difference was most of the hub's idle CPU.
"""

from __future__ import annotations

import os
import threading
from typing import Iterable

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


# -- GPU memory (NVML) -------------------------------------------------------------------
#
# A worker on a GPU holds device memory that /proc does not show. NVML (the
# driver's management library, via the optional `pynvml` of nvidia-ml-py) lists
# the processes on each GPU with their memory, without creating a CUDA context.
# Without pynvml, a driver or a GPU every figure is 0, decided once.


def gpu_bytes_by_pid(processes: Iterable[tuple[int, int | None]]) -> dict[int, int]:
    """{pid: bytes} summed over GPUs from NVML's (pid, usedGpuMemory) entries;
    None (NVML may withhold it, e.g. in containers) counts as 0."""
    out: dict[int, int] = {}
    for pid, used in processes:
        out[pid] = out.get(pid, 0) + int(used or 0)
    return out


def gpu_bytes(pids: Iterable[int | None], by_pid: dict[int, int]) -> int:
    """GPU bytes held by `pids` (a worker and its children)."""
    return sum(by_pid.get(pid, 0) for pid in set(pids) if pid is not None)


class _Nvml:
    """The NVML session, opened on first use and kept (nvmlInit is not free).
    `available` is False for good once NVML turns out to be missing."""

    def __init__(self) -> None:
        self.available: bool | None = None
        self._lock = threading.Lock()

    def processes(self) -> list[tuple[int, int | None]]:
        with self._lock:
            if self.available is None:
                self.available = self._open()
            if not self.available:
                return []
            import pynvml

            out: list[tuple[int, int | None]] = []
            try:
                for index in range(pynvml.nvmlDeviceGetCount()):
                    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                    for p in (pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
                              + pynvml.nvmlDeviceGetGraphicsRunningProcesses(handle)):
                        out.append((p.pid, p.usedGpuMemory))
            except pynvml.NVMLError:
                return []
            return out

    @staticmethod
    def _open() -> bool:
        try:
            import pynvml

            pynvml.nvmlInit()
            return pynvml.nvmlDeviceGetCount() > 0
        except Exception:  # noqa: BLE001 - no pynvml, no driver or no GPU: CPU machine
            return False


_NVML = _Nvml()


def gpu_memory(pid: int | None) -> int:
    """GPU bytes process `pid` holds on any GPU (0 on a machine without one)."""
    if pid is None:
        return 0
    processes = _NVML.processes()
    return gpu_bytes([pid], gpu_bytes_by_pid(processes)) if processes else 0


def worker_memory(pid: int | None, metric: str = "pss") -> int:
    """What a worker costs the budget: its host memory by `metric` plus its GPU memory."""
    return process_memory(pid, metric) + gpu_memory(pid)


def worker_usage(pid: int | None) -> dict[str, int]:
    """Every metric of a worker from one read of /proc (plus its GPU memory in
    each): the budget needs its PSS (what it holds) and USS (what ending it frees)."""
    if pid is None:
        return {}
    found = rollup(pid)
    if not found:
        return {}
    gpu = gpu_memory(pid)
    return {metric: value + gpu for metric, value in found.items()}
