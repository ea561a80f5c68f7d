"""The model registry: lazy, single-flight loads into worker processes, bounded
by a model count, a memory budget and an idle TTL, evicting the least recently
used idle model first.

Threads, not asyncio: Gradio runs our handlers in its thread pool, and every
wait here (a worker's reply, a load, room to load) is a blocking wait with a
deadline. One lock guards all bookkeeping; slow work (starting, calling and
stopping workers) happens outside it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable

from demohub import events
from demohub.errors import HubAtCapacity, HubError, InputError, WorkerFailed, WorkerTimeout
from demohub.process import WorkerProcess, process_memory
from demohub.sources import ModelSources, SourceState, SourceStatus
from demohub.spec import DemoSpec

#: progress(fraction or None, description) -- shown to the caller while a model loads.
Progress = Callable[[float | None, str], None]


class State(str, Enum):
    NOT_LOADED = "not loaded"
    DOWNLOADING = "downloading"
    LOADING = "loading"
    READY = "ready"
    EVICTED = "evicted"
    FAILED = "failed"


@dataclass(frozen=True)
class Limits:
    max_models: int = 3
    memory_budget: int | None = None
    idle_ttl_s: float | None = 900.0
    memory_metric: str = "pss"
    capacity_wait_s: float = 30.0
    worker_threads: int | None = None


@dataclass
class ModelStats:
    hits: int = 0
    misses: int = 0
    loads: int = 0
    load_failures: int = 0
    load_seconds_total: float = 0.0
    last_load_s: float | None = None
    predictions: int = 0
    predict_seconds_total: float = 0.0
    errors: int = 0
    crashes: int = 0
    timeouts: int = 0
    evictions: Counter = field(default_factory=Counter)


@dataclass(frozen=True)
class ModelStatus:
    """A snapshot of one model, for the status tab and /metrics."""

    name: str
    title: str
    state: State
    source: str
    placeholder: bool
    memory_bytes: int
    in_flight: int
    idle_s: float | None
    error: str | None
    download_fraction: float | None
    stats: ModelStats


@dataclass(frozen=True)
class Totals:
    loaded: int
    max_models: int
    workers_memory_bytes: int
    hub_memory_bytes: int
    memory_budget: int | None
    memory_metric: str
    idle_ttl_s: float | None


class _Load:
    """One in-progress load that concurrent first requests wait on."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None


@dataclass
class _Slot:
    spec: DemoSpec
    state: State = State.NOT_LOADED
    worker: WorkerProcess | None = None
    load: _Load | None = None
    reserved: bool = False
    placeholder: bool = False
    origin: str | None = None  # where the loaded folder came from: hub, hub cache, local, placeholder
    in_flight: int = 0
    last_used: float = 0.0
    memory: int = 0
    #: the model's size when last measured, kept after eviction to plan the next load
    last_memory: int = 0
    error: str | None = None
    stats: ModelStats = field(default_factory=ModelStats)
    call_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def occupies(self) -> bool:
        return self.worker is not None or self.reserved

    @property
    def expected_load_s(self) -> float:
        return self.stats.last_load_s or self.spec.expected_load_s


class Registry:
    def __init__(self, specs: list[DemoSpec], sources: ModelSources, limits: Limits = Limits()):
        self.limits = limits
        self._sources = sources
        self._slots = {spec.name: _Slot(spec) for spec in specs}
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._closed = threading.Event()
        self._janitor: threading.Thread | None = None

    # -- public API -----------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return list(self._slots)

    def predict(self, name: str, request: Any, progress: Progress | None = None) -> Any:
        """Run `request` through `name`'s model, loading it first if needed."""
        slot = self._slots[name]
        with self._lock:
            slot.in_flight += 1
            slot.last_used = time.monotonic()
        try:
            while True:
                worker = self._ensure_loaded(slot, progress)
                with slot.call_lock:
                    if worker is not slot.worker or not worker.alive():
                        continue  # it crashed or was replaced while we queued
                    return self._call(slot, worker, request)
        finally:
            with self._lock:
                slot.in_flight -= 1
                slot.last_used = time.monotonic()
                self._room.notify_all()

    def evict(self, name: str, reason: str = "manual") -> bool:
        """Evict `name` if it is loaded and idle; returns whether it was."""
        with self._lock:
            slot = self._slots[name]
            if slot.worker is None or slot.in_flight:
                return False
            worker = self._detach(slot, reason)
        worker.stop()
        return True

    def sweep(self) -> None:
        """Evict models idle past the TTL, notice dead workers, refresh memory."""
        now = time.monotonic()
        victims = []
        with self._lock:
            for slot in self._slots.values():
                if slot.worker is None or slot.state != State.READY:
                    continue
                if not slot.worker.alive():
                    self._record_crash(slot, slot.worker, "its worker died while idle")
                    continue
                ttl = self.limits.idle_ttl_s
                if ttl is not None and not slot.in_flight and now - slot.last_used > ttl:
                    victims.append(self._detach(slot, "idle"))
        for worker in victims:
            worker.stop()
        for slot in list(self._slots.values()):
            worker = slot.worker
            if worker is not None:
                slot.memory = slot.last_memory = worker.memory(self.limits.memory_metric)
        self._enforce_budget(keep=None)

    def start(self, interval_s: float = 1.0) -> None:
        """Start the background sweeper (idle TTL, crash detection, memory)."""

        def run() -> None:
            while not self._closed.wait(interval_s):
                try:
                    self.sweep()
                except Exception as exc:  # noqa: BLE001 - never let the janitor die
                    events.event("sweep_error", error=str(exc))

        self._janitor = threading.Thread(target=run, daemon=True, name="registry-sweeper")
        self._janitor.start()

    def close(self) -> None:
        """Stop every worker (on shutdown)."""
        self._closed.set()
        with self._lock:
            workers = [self._detach(s, "shutdown") for s in self._slots.values() if s.worker]
        for worker in workers:
            worker.stop(grace=1.0)

    def status(self) -> list[ModelStatus]:
        now = time.monotonic()
        out = []
        with self._lock:
            for slot in self._slots.values():
                source: SourceStatus = self._sources.status(slot.spec.name)
                state = slot.state
                if state == State.NOT_LOADED and source.state == SourceState.DOWNLOADING:
                    state = State.DOWNLOADING
                if state == State.NOT_LOADED and source.state == SourceState.FAILED:
                    state = State.FAILED
                out.append(
                    ModelStatus(
                        name=slot.spec.name,
                        title=slot.spec.title,
                        state=state,
                        source=slot.origin or source.source.describe(),
                        placeholder=slot.placeholder,
                        memory_bytes=slot.memory if slot.worker else 0,
                        in_flight=slot.in_flight,
                        idle_s=(now - slot.last_used) if slot.last_used else None,
                        error=slot.error or source.error,
                        download_fraction=source.fraction,
                        stats=slot.stats,
                    )
                )
        return out

    def totals(self) -> Totals:
        import os

        with self._lock:
            loaded = [s for s in self._slots.values() if s.worker is not None]
            workers_memory = sum(s.memory for s in loaded)
        return Totals(
            loaded=len(loaded),
            max_models=self.limits.max_models,
            workers_memory_bytes=workers_memory,
            hub_memory_bytes=process_memory(os.getpid(), self.limits.memory_metric),
            memory_budget=self.limits.memory_budget,
            memory_metric=self.limits.memory_metric,
            idle_ttl_s=self.limits.idle_ttl_s,
        )

    def worker_pids(self) -> dict[str, int]:
        with self._lock:
            return {n: s.worker.pid for n, s in self._slots.items() if s.worker is not None}

    # -- loading --------------------------------------------------------------------

    def _ensure_loaded(self, slot: _Slot, progress: Progress | None) -> WorkerProcess:
        missed = False  # a request counts once: a hit, or a miss that waited for a load
        while True:
            with self._lock:
                worker = slot.worker
                if worker is not None and worker.alive() and slot.state == State.READY:
                    if not missed:
                        slot.stats.hits += 1
                    return worker
                if worker is not None and not worker.alive():
                    self._record_crash(slot, worker, "its worker died")
                if not missed:
                    slot.stats.misses += 1
                    missed = True
                load = slot.load
                leader = load is None
                if leader:
                    load = slot.load = _Load()
            if leader:
                try:
                    self._load(slot, progress)
                except BaseException as exc:
                    load.error = exc
                    raise
                finally:
                    with self._lock:
                        slot.load = None
                    load.done.set()
            else:
                self._wait_for_load(slot, load, progress)

    def _wait_for_load(self, slot: _Slot, load: _Load, progress: Progress | None) -> None:
        started = time.monotonic()
        while not load.done.wait(0.25):
            if progress:
                self._report_progress(slot, progress, started)
        error = load.error
        if isinstance(error, HubError):
            raise type(error)(str(error))
        if error is not None:
            raise WorkerFailed(f"loading the {slot.spec.name} model failed: {error}")

    def _report_progress(self, slot: _Slot, progress: Progress, started: float) -> None:
        name = slot.spec.name
        if slot.state == State.DOWNLOADING:
            source = self._sources.status(name)
            fraction = source.fraction
            done_mb = source.downloaded_bytes / 2**20
            total = f" of {source.total_bytes / 2**20:.0f} MB" if source.total_bytes else ""
            progress(fraction, f"downloading {name} model, {done_mb:.0f} MB{total}")
            return
        expected = slot.expected_load_s
        elapsed = time.monotonic() - started
        remaining = max(1.0, expected - elapsed)
        progress(min(0.95, elapsed / expected), f"loading {name} model, ~{remaining:.0f} s")

    def _load(self, slot: _Slot, progress: Progress | None) -> None:
        name = slot.spec.name
        started = time.monotonic()

        def tick(*_: object) -> None:
            if progress:
                self._report_progress(slot, progress, started)

        with self._lock:
            slot.state = State.DOWNLOADING
            slot.error = None
        try:
            resolved = self._sources.resolve(name, tick=tick)
            self._make_room(slot)
            with self._lock:
                slot.state = State.LOADING
            started = time.monotonic()
            tick()
            worker = WorkerProcess.start(
                slot.spec, resolved.path, placeholder=resolved.placeholder,
                threads=self.limits.worker_threads,
            )
            try:
                info = worker.wait_ready(slot.spec.load_timeout_s, tick=tick)
            except BaseException:
                worker.kill()
                raise
        except BaseException as exc:
            with self._lock:
                slot.reserved = False
                slot.state = State.FAILED
                slot.error = str(exc)
                slot.stats.load_failures += 1
                self._room.notify_all()
            events.event("load_failed", name, error=str(exc)[:500])
            raise
        memory = worker.memory(self.limits.memory_metric)
        with self._lock:
            slot.worker = worker
            slot.reserved = False
            slot.placeholder = resolved.placeholder
            slot.origin = resolved.origin
            slot.state = State.READY
            slot.memory = slot.last_memory = memory
            slot.stats.loads += 1
            slot.stats.last_load_s = info.seconds
            slot.stats.load_seconds_total += info.seconds
            slot.last_used = time.monotonic()
        events.event(
            "load", name, seconds=info.seconds, memory_mb=round(memory / 2**20, 1),
            pid=worker.pid, origin=resolved.origin,
        )
        self._enforce_budget(keep=slot)

    def _make_room(self, slot: _Slot) -> None:
        """Reserve a place for `slot`, evicting LRU idle models or waiting."""
        deadline = time.monotonic() + self.limits.capacity_wait_s
        while True:
            with self._lock:
                others = [s for s in self._slots.values() if s is not slot and s.occupies]
                over_count = len(others) + 1 > self.limits.max_models
                budget = self.limits.memory_budget
                estimate = slot.last_memory  # 0 before the first load
                over_memory = budget is not None and sum(s.memory for s in others) + estimate > budget
                if not over_count and not over_memory:
                    slot.reserved = True
                    return
                victim = self._lru_idle(others)
                if victim is not None:
                    worker = self._detach(victim, "capacity" if over_count else "memory")
                else:
                    worker = None
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        busy = ", ".join(s.spec.name for s in others)
                        raise HubAtCapacity(
                            f"The hub is at capacity: every loaded model ({busy}) is busy "
                            "serving requests. Try again in a moment."
                        )
                    self._room.wait(min(remaining, 0.5))
            if worker is not None:
                worker.stop()

    def _enforce_budget(self, keep: _Slot | None) -> None:
        budget = self.limits.memory_budget
        if budget is None:
            return
        while True:
            with self._lock:
                loaded = [s for s in self._slots.values() if s.worker is not None]
                if sum(s.memory for s in loaded) <= budget:
                    return
                victim = self._lru_idle([s for s in loaded if s is not keep])
                if victim is None:
                    if keep is not None:  # report once per load, not on every sweep
                        events.event("over_budget", keep.spec.name,
                                     memory_mb=round(sum(s.memory for s in loaded) / 2**20, 1))
                    return
                worker = self._detach(victim, "memory")
            worker.stop()

    # -- calling --------------------------------------------------------------------

    def _call(self, slot: _Slot, worker: WorkerProcess, request: Any) -> Any:
        try:
            result, seconds = worker.call(request, slot.spec.predict_timeout_s)
        except InputError:
            raise
        except WorkerFailed as exc:
            with self._lock:
                if worker.alive():
                    slot.stats.errors += 1
                else:
                    timed_out = isinstance(exc, WorkerTimeout)
                    if timed_out:
                        slot.stats.timeouts += 1
                    self._record_crash(slot, worker, str(exc), count=not timed_out)
            raise
        with self._lock:
            slot.stats.predictions += 1
            slot.stats.predict_seconds_total += seconds
        return result

    # -- bookkeeping (call with the lock held) -----------------------------------------

    def _lru_idle(self, candidates: list[_Slot]) -> _Slot | None:
        idle = [s for s in candidates if s.worker is not None and s.in_flight == 0
                and s.state == State.READY]
        return min(idle, key=lambda s: s.last_used, default=None)

    def _detach(self, slot: _Slot, reason: str) -> WorkerProcess:
        worker = slot.worker
        assert worker is not None
        slot.worker = None
        slot.memory = 0
        slot.state = State.EVICTED
        slot.stats.evictions[reason] += 1
        idle_s = time.monotonic() - slot.last_used if slot.last_used else 0.0
        events.event("evict", slot.spec.name, reason=reason, idle_s=idle_s, pid=worker.pid)
        self._room.notify_all()
        return worker

    def _record_crash(self, slot: _Slot, worker: WorkerProcess, why: str, count: bool = True) -> None:
        if slot.worker is worker:
            slot.worker = None
            slot.memory = 0
            slot.state = State.FAILED
            slot.error = why
            if count:
                slot.stats.crashes += 1
            events.event("crash", slot.spec.name, pid=worker.pid, error=why[:300])
            self._room.notify_all()
        worker.kill()
