"""The hub's own Gradio temp folder: one per run, swept while serving, removed at exit.

Gradio writes uploads and generated files (heatmaps) under `GRADIO_TEMP_DIR`, one
folder per file hash; its `delete_cache` schedule deletes the files it tracks once
they are older than the TTL, but leaves their folders, and a parser temp file from
an upload cut off mid-way is tracked by nobody. Each run gets a private folder
inside the configured one, so everything in it is this process's: the sweep here
removes what Gradio leaves, and the whole folder goes at shutdown without touching
another hub's files. The owner is `hub.py`: `claim()` before the app is built,
`release()` when the server has stopped.

Worker processes get a folder of their own in it (`worker_folder`, their TMPDIR):
frameworks write temp files there (TensorFlow's autograph leaves a module per
traced function, cleaned only by an atexit hook a killed worker never runs), and
the worker's handle removes the folder once the process has ended.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

PREFIX = "demohub-"
#: folders owned by a live worker's handle; the sweep leaves them alone
WORKER_PREFIX = "worker-"


def claim(base: str | os.PathLike | None = None) -> Path:
    """Create this run's folder under `base` (default: GRADIO_TEMP_DIR or <tmp>/gradio)
    and point Gradio at it. Folders of earlier runs whose process is gone are removed."""
    base = Path(base or os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")
    base.mkdir(parents=True, exist_ok=True)
    for stale in base.glob(f"{PREFIX}*"):
        pid = stale.name[len(PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(stale, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base))
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


def worker_folder(name: str) -> Path:
    """A new, empty temp folder for one worker of demo `name`, in this run's folder
    (system temp when no hub claimed one). Its owner removes it when the worker ends."""
    base = Path(os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{WORKER_PREFIX}{name}-", dir=base))


def sweep(folder: Path, max_age_s: float, now: float | None = None) -> int:
    """Remove loose files at the top of `folder` (parser temp files; Gradio keeps every
    finished file inside a hash folder) and folders left empty, once older than
    `max_age_s`. Files inside hash folders are Gradio's to delete (it knows which
    ones to keep, e.g. example images). Returns how many entries were removed."""
    now = time.time() if now is None else now
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.name.startswith(WORKER_PREFIX):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < max_age_s:
                continue
            if entry.is_dir(follow_symlinks=False):
                os.rmdir(entry.path)  # only succeeds when Gradio has emptied it
            else:
                os.unlink(entry.path)
            removed += 1
        except OSError:
            continue
    return removed


def release(folder: Path) -> None:
    """Remove this run's folder and everything in it."""
    shutil.rmtree(folder, ignore_errors=True)
