"""The recent past the Status tab plots: memory per model and per process,
sampled every few seconds, and the events that explain it (load, evict,
crash, failed load) and every request's wall time, heard on the event bus.

Owner and lifetime: the web app (`demohub.web.app.create_app`) makes one History
per hub. It listens to the event bus from construction to `stop()`; its one
sampler thread runs from the app's startup to its shutdown (`lifespan`), and
`stop()` waits for it at most `stop_timeout_s`. Everything it keeps is in
bounded ring buffers, behind one lock that is held only to append or copy.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import AsyncIterator, Callable

from demohub import events
from demohub.registry import Registry

#: Events shown on the timeline; "predict" feeds the latency plots instead.
TIMELINE_EVENTS = ("load", "evict", "crash", "load_failed", "reload")


@dataclass(frozen=True)
class MemorySample:
    ts: float
    #: per model: bytes (0 while not loaded) and the worker's pid when it has one
    models: dict[str, int]
    pids: dict[str, int]
    #: processes a backend keeps besides the models (templates, daemons): name -> bytes
    shared: dict[str, int]
    hub: int
    budget: int | None


@dataclass(frozen=True)
class TimelineEvent:
    ts: float
    kind: str
    model: str
    detail: str


@dataclass(frozen=True)
class Request:
    ts: float
    model: str
    seconds: float
    ok: bool


def _detail(record: dict) -> str:
    kind = record["event"]
    if kind == "load":
        seconds, memory_mb = record.get("seconds"), record.get("memory_mb")
        took = f"loaded in {seconds:.1f} s" if isinstance(seconds, (int, float)) else "loaded"
        size = f", {memory_mb:.0f} MB" if isinstance(memory_mb, (int, float)) else ""
        return f"{took}{size}, pid {record.get('pid')}"
    if kind == "evict":
        return f"evicted ({record.get('reason')}), pid {record.get('pid')}"
    if kind == "reload":  # --reload: a saved file changed its code
        return f"reloaded: {record.get('why')}"[:200]
    return str(record.get("error", ""))[:200]


class History:
    def __init__(self, registry: Registry, period_s: float = 3.0, window_s: float = 900.0,
                 max_events: int = 1000, max_requests: int = 5000, stop_timeout_s: float = 5.0):
        self.registry = registry
        self.period_s = period_s
        self.window_s = window_s
        self.stop_timeout_s = stop_timeout_s
        self.started_at = time.time()
        self._names = frozenset(registry.names)
        self._samples: deque[MemorySample] = deque(maxlen=math.ceil(window_s / period_s) + 1)
        self._events: deque[TimelineEvent] = deque(maxlen=max_events)
        self._requests: deque[Request] = deque(maxlen=max_requests)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = events.subscribe(self._on_event)

    def demos_changed(self, names: list[str]) -> None:
        """The page was rebuilt with these demos (--reload): their events count from now."""
        self._names = frozenset(names)

    # -- what the bus tells us ----------------------------------------------------------

    def _on_event(self, record: dict) -> None:
        """Runs on the emitting thread (maybe under the registry's lock): append only."""
        model = record.get("model")
        if model not in self._names:
            return
        kind = record["event"]
        ts = float(record["ts"])
        if kind == "predict" and isinstance(record.get("seconds"), (int, float)):
            with self._lock:
                self._requests.append(Request(ts, model, float(record["seconds"]), bool(record.get("ok"))))
        elif kind in TIMELINE_EVENTS:
            with self._lock:
                self._events.append(TimelineEvent(ts, kind, model, _detail(record)))

    # -- memory sampling ----------------------------------------------------------------

    def sample(self) -> MemorySample:
        """Measure once now and keep it (the sampler thread calls this every period)."""
        statuses = self.registry.status()
        totals = self.registry.totals()
        pids = self.registry.worker_pids()
        sample = MemorySample(
            ts=time.time(),
            models={s.name: s.memory_bytes for s in statuses},
            pids={name: pid for name, pid in pids.items() if name in self._names},
            shared={p.name if p.pid is None else f"{p.name} (pid {p.pid})": p.memory_bytes for p in totals.shared},
            hub=totals.hub_memory_bytes,
            budget=totals.memory_budget,
        )
        with self._lock:
            self._samples.append(sample)
        return sample

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        if self._unsubscribe is None:
            self._unsubscribe = events.subscribe(self._on_event)

        def run() -> None:
            while True:
                try:
                    self.sample()
                except Exception as exc:  # noqa: BLE001 - a failed sample must not end the plots
                    events.event("history_error", error=f"{type(exc).__name__}: {exc}"[:300])
                if self._stop.wait(self.period_s):
                    return

        self._thread = threading.Thread(target=run, daemon=True, name="status-history")
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and listening; waits for the thread at most `stop_timeout_s`."""
        self._stop.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=self.stop_timeout_s)

    def lifespan(self, inner: Callable) -> Callable:
        """Wrap an ASGI lifespan so the sampler runs exactly while the app serves."""

        @contextlib.asynccontextmanager
        async def run(app) -> AsyncIterator:
            self.start()
            try:
                async with inner(app) as state:
                    yield state
            finally:
                self.stop()

        return run

    # -- what the tab reads (copies) -----------------------------------------------------

    def memory(self) -> list[MemorySample]:
        with self._lock:
            return list(self._samples)

    def timeline(self, since: float = 0.0) -> list[TimelineEvent]:
        with self._lock:
            return [e for e in self._events if e.ts >= since]

    def requests(self, since: float = 0.0) -> list[Request]:
        with self._lock:
            return [r for r in self._requests if r.ts >= since]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation, as numpy's default."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency(requests: list[Request]) -> dict[str, tuple[float, float, int]]:
    """Per model: (p50, p95, count) of the successful requests' wall seconds."""
    by_model: dict[str, list[float]] = {}
    for r in requests:
        if r.ok:
            by_model.setdefault(r.model, []).append(r.seconds)
    return {m: (percentile(v, 50), percentile(v, 95), len(v)) for m, v in by_model.items()}
