"""glibc malloc settings for the two kinds of process: the hub hands freed
payloads back; a worker keeps its model's working set.

The hub process handles megabyte-sized buffers on many threads (uploads, heatmap
arrays from workers, the JPEGs Gradio encodes from them). With glibc's
defaults each thread may get its own malloc arena, and after the first large
free the mmap threshold rises to 32 MB, so later buffers come from arenas that
never shrink: RSS creeps up under traffic and stays. Measured on this machine
(16 threads encoding ~1 MB frames): +54 MB left behind by default, +9.5 MB with
two arenas, a fixed 256 KiB mmap threshold and a periodic `malloc_trim`.

A worker: it runs the same model call over and over, and each call allocates
and frees the same large temporaries (durian's activations and gradients,
~29 MB a call). With glibc's defaults each thread's arena gives its free top
back to the OS after every call (the trim threshold stays at 128 KiB unless a
large mmapped block happens to be freed first) and the next call faults it
all in again: 7,400 page faults per durian call, ~20-30 ms of its ~210 ms on
an AMD EPYC KVM guest (docs/benchmarks.md). The one-process app keeps them (18
faults a call), because something in its long life raised glibc's dynamic
thresholds; a worker gets the same on purpose.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
#: How often freed heap pages are handed back to the OS.
TRIM_EVERY_S = 30.0


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()


def tune(arenas: int = 2, mmap_threshold: int = 256 * 1024) -> bool:
    """Fewer arenas and a fixed mmap threshold; call before the server's threads
    start. Returns False where the C library is not glibc (nothing to tune)."""
    if _LIBC is None:
        return False
    return bool(_LIBC.mallopt(_M_ARENA_MAX, arenas)) and bool(_LIBC.mallopt(_M_MMAP_THRESHOLD, mmap_threshold))


#: glibc's own ceiling for the dynamic mmap threshold (on 64-bit): a temporary
#: below it comes from an arena and is reused by the next call
WORKER_MMAP_THRESHOLD = 32 * 2**20
#: an arena keeps this much free memory at its top instead of handing it back
WORKER_TRIM_THRESHOLD = 64 * 2**20


def keep_working_set(mmap_threshold: int = WORKER_MMAP_THRESHOLD,
                     trim_threshold: int = WORKER_TRIM_THRESHOLD) -> bool:
    """For a worker, before its model loads: what one call frees, the next call
    reuses, instead of faulting it in again. Returns False where the C library
    is not glibc."""
    if _LIBC is None:
        return False
    return bool(_LIBC.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(_LIBC.mallopt(_M_TRIM_THRESHOLD, trim_threshold))


def trim() -> None:
    """Give free heap pages back to the OS (a few ms on the hub's heap)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)

