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


def run(script: str, mode: str) -> float:
    """The last line a fresh interpreter running `script` prints, as a number."""
    out = subprocess.run([sys.executable, "-c", script, mode], cwd=PROJECT_ROOT, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    return float(out.strip().splitlines()[-1])


def left_behind(mode: str) -> float:
    return run(WORKLOAD, mode)


def test_tuned_heap_gives_freed_frames_back():
    """Many threads handling megabyte frames: the tuned, trimmed heap keeps far
    less of what it freed than glibc's defaults do."""
    default, tuned = left_behind("default"), left_behind("tuned")
    assert tuned < default / 2, (default / 2**20, tuned / 2**20)


WORKER_LOOP = r"""
import sys, threading
import numpy as np
from demohub import heap
if sys.argv[1] == "tuned":
    assert heap.keep_working_set()
def faults():
    return int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[7])
def call():  # one model call: temporaries of several sizes, written, then freed
    arrays = [np.ones(n, dtype=np.float32) for n in (2**18, 2**20, 3 * 2**20, 2**21, 2**19)]
    return sum(float(a[-1]) for a in arrays)
per_call = []
def serve():  # a framework's pool thread, so a non-main arena, as TensorFlow's are
    for _ in range(3):
        call()
    before = faults()
    for _ in range(20):
        call()
    per_call.append((faults() - before) / 20)
t = threading.Thread(target=serve); t.start(); t.join()
print(per_call[0])
"""


def faults_per_call(mode: str) -> float:
    return run(WORKER_LOOP, mode)


def test_a_worker_reuses_its_temporaries_instead_of_faulting_them_in_every_call():
    """The same 27 MB of temporaries a call: glibc's defaults hand them back and
    fault them in again (thousands of page faults a call); a worker's heap keeps them."""
    default, tuned = faults_per_call("default"), faults_per_call("tuned")
    assert default > 500, default
    assert tuned < default / 10, (default, tuned)
