"""A folder where a runtime keeps what it derives from a model folder (a traced
graph, an index), so the next worker of the same model skips that work.

The hub exports its `--cache-dir` to every worker it starts as `HUB_CACHE_DIR`
(and to Ray replicas: each node keeps its own at that path); a runtime's folder
is `<cache dir>/derived/<demo>`. Outside a hub (tests, notebooks, the
one-process baseline) there is none, and a runtime does the work every time.

Entries are written whole or not at all (`store` renames a finished folder into
place), named by a key the runtime derives from everything they depend on, and
only the newest few per demo are kept.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

ENV = "HUB_CACHE_DIR"
#: entries kept per demo; older ones (an earlier model revision or code) are removed on store
KEEP = 3
#: a half-written entry older than this belongs to a worker that died while writing it
STALE_S = 3600.0


def folder(demo: str) -> Path | None:
    """`<HUB_CACHE_DIR>/derived/<demo>`, or None when the hub set no cache dir."""
    root = os.environ.get(ENV)
    return Path(root) / "derived" / demo if root else None


def key(*parts: str | bytes) -> str:
    """A short hex digest of `parts` (file contents, versions, settings), in order."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:32]


def file_identity(path: Path) -> str:
    """Name, size and modification time: enough to notice a replaced weights file
    without reading hundreds of megabytes at every load."""
    stat = path.stat()
    return f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"


def store(place: Path, entry: str, write: Callable[[Path], None]) -> Path | None:
    """Run `write(folder)` into a fresh folder and move it to `place/entry` once
    complete. Returns the entry, or None if another worker stored it first."""
    place.mkdir(parents=True, exist_ok=True)
    target = place / entry
    scratch = Path(tempfile.mkdtemp(prefix=".tmp-", dir=place))
    try:
        write(scratch)
        try:
            scratch.rename(target)
        except OSError:  # another copy of the model got there first
            return None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _prune(place, keep=target)
    return target


def _prune(place: Path, keep: Path) -> None:
    now = time.time()
    entries = []
    for path in place.iterdir():
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:
            continue  # removed by another worker meanwhile
        if path.name.startswith(".tmp-"):
            if age > STALE_S:
                shutil.rmtree(path, ignore_errors=True)
        elif path != keep:
            entries.append((age, path))
    for _, path in sorted(entries)[KEEP - 1:]:
        shutil.rmtree(path, ignore_errors=True)
