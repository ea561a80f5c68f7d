"""What each model's last load really took, remembered across restarts.

A hub on a Space restarts at every deploy and every sleep; without this, the
first visitor after a restart would be told the demo author's guess
(`SPEC.expected_load_s`) as if it were a measurement. The registry tells this
module each load it measures; the file lives in `--cache-dir` (`measured.json`)
so the next run starts from what this one saw.

`progress_text` is the decision (a pure function, tested as a table); `Measured`
is the mechanism: a small JSON file, rewritten whole (write, then rename) after
each load, outside the registry's lock.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

FILE = "measured.json"


@dataclass(frozen=True)
class LastLoad:
    """One model's most recent load, as measured."""

    seconds: float
    #: the model's memory right after that load (by `memory_metric`), 0 if unknown
    memory_bytes: int = 0
    memory_metric: str = ""
    #: bytes its last Hub download fetched, 0 if none
    download_bytes: int = 0
    #: the most private memory one copy has held, and its share of pages it shares
    #: (by `memory_metric`): what the memory budget plans the next load at
    peak_private_bytes: int = 0
    shared_part_bytes: int = 0
    #: the backend (and start method) those sizes were measured with: a forked worker's
    #: private size leaves out the framework it shares with its template, a spawned one's not
    sizes_for: str = ""
    #: when (Unix time)
    at: float = 0.0


def progress_text(name: str, elapsed_s: float, this_run_s: float | None,
                  remembered: LastLoad | None, guess_s: float | None = None) -> tuple[float | None, str]:
    """(fraction, sentence) for a visitor waiting on a cold load.

    A load measured in this run is the estimate; failing that, the last run's,
    said as what it is; with neither, no estimate, and the demo author's guess
    (`SPEC.expected_load_s`) only labelled as a guess."""
    if this_run_s:
        expected, note = this_run_s, ""
    elif remembered is not None and remembered.seconds > 0:
        expected, note = remembered.seconds, f" (its last load took {remembered.seconds:.1f} s)"
    else:
        guess = f", the demo's author guesses ~{guess_s:.0f} s" if guess_s else ""
        return None, f"loading {name} model (first load: no estimate yet{guess})"
    remaining = max(1.0, expected - elapsed_s)
    return min(0.95, elapsed_s / expected), f"loading {name} model, ~{remaining:.0f} s{note}"


class Measured:
    """The remembered last loads in `<cache dir>/measured.json`. Unreadable or
    foreign content counts as no history (it is only ever an estimate)."""

    def __init__(self, cache_dir: Path | None):
        self.path = Path(cache_dir) / FILE if cache_dir else None
        self._loads: dict[str, LastLoad] = self._read()
        self._lock = threading.Lock()  # guards _loads only
        self._writing = threading.Lock()  # keeps whole-file writes in order; owns nothing else

    def _read(self) -> dict[str, LastLoad]:
        if self.path is None:
            return {}
        try:
            raw = json.loads(self.path.read_text())
            return {str(name): LastLoad(**{k: v for k, v in entry.items() if k in LastLoad.__dataclass_fields__})
                    for name, entry in raw.items()}
        except (OSError, ValueError, TypeError, AttributeError):
            return {}

    def get(self, name: str) -> LastLoad | None:
        with self._lock:
            return self._loads.get(name)

    def all(self) -> dict[str, LastLoad]:
        with self._lock:
            return dict(self._loads)

    def record(self, name: str, seconds: float, memory_bytes: int = 0, memory_metric: str = "",
               download_bytes: int = 0, peak_private_bytes: int = 0, shared_part_bytes: int = 0,
               sizes_for: str = "") -> None:
        """Remember a load just measured (call without any coordinating lock held:
        this writes a file). A failed write only costs the next run its estimate."""
        with self._lock:
            before = self._loads.get(name)
            self._loads[name] = LastLoad(
                seconds=round(seconds, 3), memory_bytes=int(memory_bytes), memory_metric=memory_metric,
                download_bytes=int(download_bytes or (before.download_bytes if before else 0)),
                peak_private_bytes=int(peak_private_bytes), shared_part_bytes=int(shared_part_bytes),
                sizes_for=sizes_for, at=round(time.time(), 1))
        self._write()

    def sizes(self, name: str, peak_private_bytes: int, shared_part_bytes: int, sizes_for: str = "") -> None:
        """Update a model's remembered sizes (they grow after its first calls)."""
        with self._lock:
            before = self._loads.get(name)
            if before is None or (before.peak_private_bytes, before.shared_part_bytes, before.sizes_for) == (
                    peak_private_bytes, shared_part_bytes, sizes_for):
                return
            self._loads[name] = replace(before, peak_private_bytes=int(peak_private_bytes),
                                        shared_part_bytes=int(shared_part_bytes), sizes_for=sizes_for)
        self._write()

    def _write(self) -> None:
        if self.path is None:
            return
        with self._writing:  # the snapshot is taken inside, so the last file written is the newest
            with self._lock:
                snapshot = {n: asdict(v) for n, v in self._loads.items()}
            scratch = None
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd, scratch = tempfile.mkstemp(prefix=".measured-", dir=self.path.parent)
                with os.fdopen(fd, "w") as out:
                    json.dump(snapshot, out, indent=1, sort_keys=True)
                os.replace(scratch, self.path)
            except OSError:
                if scratch is not None:
                    Path(scratch).unlink(missing_ok=True)
