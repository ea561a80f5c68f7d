"""The hub's heap settings: real glibc, a real threaded workload."""

from __future__ import annotations

import subprocess
import sys

from support import PROJECT_ROOT

WORKLOAD = r"""
import sys, threading, io
import numpy as np
from PIL import Image
from demohub import heap
if sys.argv[1] == "tuned":
    assert heap.tune()
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
def work(n):
    for i in range(n):
        a = np.random.randint(0, 255, (600 + i % 7 * 20, 768, 3), dtype=np.uint8)
        buf = io.BytesIO(); Image.fromarray(a).save(buf, "JPEG"); del a, buf
start = rss()
for _ in range(3):
    threads = [threading.Thread(target=work, args=(10,)) for _ in range(16)]
    [t.start() for t in threads]; [t.join() for t in threads]
if sys.argv[1] == "tuned":
    heap.trim()
print(rss() - start)
"""


def left_behind(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", WORKLOAD, mode], cwd=PROJECT_ROOT, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    return int(out.strip().splitlines()[-1])


def test_tuned_heap_gives_freed_frames_back():
    """Many threads handling megabyte frames: the tuned, trimmed heap keeps far
    less of what it freed than glibc's defaults do."""
    default, tuned = left_behind("default"), left_behind("tuned")
    assert tuned < default / 2, (default / 2**20, tuned / 2**20)
