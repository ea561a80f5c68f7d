"""The model registry: the coordinator. Lazy, single-flight loads, bounded by a
model count, a memory budget and an idle TTL; failed loads back off; each call
gets a share of the CPU; a busy model gets another copy while the budget has
room, and loses it when idle.

Which model goes, and when a load fits, are decided in `demohub.policy` (pure
functions over a snapshot); how a model actually runs (a spawned process, a
forked child, a Ray replica) is the backend's business (`demohub.backends`):
the registry measures, decides through the policy, and starts, calls and ends
`ModelHandle`s.

Threads, not asyncio: Gradio runs our handlers in its thread pool, and every
wait here (a reply, a load, room to load) is a blocking wait with a deadline.
One lock (`_lock`, with its condition `_room`) guards all bookkeeping and is
held only for bookkeeping: starting, calling, measuring and ending models,
reading /proc, and emitting events happen outside it (tests/lockcheck.py
fails a test that does otherwise).
"""

from __future__ import annotations

import itertools
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable

from demohub import batching, events, loadtimes, policy
from demohub.backends import Backend, ModelHandle, SharedProcess, usable_cores
from demohub.errors import (CopyFailed, HubAtCapacity, HubError, InputError, ModelBusy, ModelError,
                            ModelUnavailable, NotStarted, WorkerFailed, WorkerTimeout)
from demohub.memory import own_memory
from demohub.sources import ModelSources, SourceState, SourceStatus
from demohub.spec import DemoSpec

#: progress(fraction or None, description) -- shown to the caller while a model loads.
Progress = Callable[[float | None, str], None]


class State(str, Enum):
    NOT_LOADED = "not loaded"
    DOWNLOADING = "downloading"
    #: ready to load, waiting for the memory or the place another model holds
    WAITING = "waiting for room"
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
    #: CPU threads per call; None: the registry shares the cores between running calls.
    worker_threads: int | None = None
    #: first wait after a failed load, doubled on each failure up to the cap
    load_retry_s: float = 2.0
    load_retry_cap_s: float = 300.0
    #: an extra copy of a model ends once the model has not needed it this long
    copy_idle_ttl_s: float = 60.0
    #: a model gets copies only if its calls take this long on average
    #: (questions' 15 ms calls queue briefly; docs/benchmarks.md, "copies")
    copy_min_call_s: float = 0.05
    #: a call gets more than one CPU thread only if its model's calls take this long
    #: on average: questions' ~7 ms forward pass saves 1.5 ms with a second thread
    #: and burns 47 % more CPU, which the server and its callers need at that moment
    #: (docs/benchmarks.md, "one thread for a short call")
    threads_min_call_s: float = 0.05
    #: a model that loaded this recently is not evicted to make room for another
    #: load, so it serves the requests it loaded for (a budget really exceeded still
    #: takes it out)
    min_stay_s: float = 2.0
    eviction: str = "cost"  # policy.EVICTION_RULES


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

    def mean_call_s(self) -> float | None:
        return policy.mean_call_s(self.predictions, self.predict_seconds_total)


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
    where: str | None = None
    #: the last failure's exception and traceback: for operators, never for clients
    traceback: str | None = None
    #: seconds until a failed load or download is tried again
    retry_in_s: float | None = None
    #: copies serving now (1 for a local worker; Ray Serve's running replicas)
    copies: int = 0


@dataclass(frozen=True)
class Totals:
    loaded: int
    max_models: int
    workers_memory_bytes: int
    hub_memory_bytes: int
    memory_budget: int | None
    memory_metric: str
    idle_ttl_s: float | None
    shared: tuple[SharedProcess, ...] = ()

    @property
    def shared_memory_bytes(self) -> int:
        return sum(p.memory_bytes for p in self.shared)


#: how often a request that never reached its model (its worker died on the call
#: ahead) is sent again, to the restarted worker
NOT_STARTED_RETRIES = 2

#: how fast a model's count of recent requests fades (the eviction rule's frequency)
USES_HALF_LIFE_S = 60.0


def _at_capacity(wait: policy.Wait | policy.Drain, name: str, loaded: list[str]) -> str:
    """The sentence for a load that waited out --capacity-wait: what it waited for."""
    if isinstance(wait, policy.Wait) and wait.loads:
        return (f"The hub is still loading other models, and loads {name} only after it has measured them, "
                "to stay within its memory budget. Try again in a moment.")
    busy = ", ".join(sorted(loaded)) or "none"
    return f"The hub is at capacity: every loaded model ({busy}) is busy serving requests. Try again in a moment."


@dataclass
class _Retiring:
    """A handle taken out of service by `Registry.reload` while calls ran on it:
    it ends when the last of them returns."""

    handle: ModelHandle
    calls: int


class _Load:
    """One in-progress load that concurrent first requests wait on."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None


@dataclass
class _Slot:
    spec: DemoSpec
    state: State = State.NOT_LOADED
    handle: ModelHandle | None = None
    #: a model started but not ready yet: known here so shutdown can end it too
    loading: ModelHandle | None = None
    load: _Load | None = None
    reserved: bool = False
    placeholder: bool = False
    origin: str | None = None  # where the loaded folder came from: hub, hub cache, local, placeholder
    in_flight: int = 0  # requests inside predict(): waiting for a load or calling
    calls: int = 0  # of those, the ones inside the model right now
    last_used: float = 0.0
    #: the last time more than one of its calls ran at once (extra copies end after a while without)
    crowded_at: float = 0.0
    #: what it holds now by the budget's metric, and what ending it would free (its
    #: private memory), as last measured (demohub/policy.py says why both)
    memory: int = 0
    private: int = 0
    #: kept after eviction to plan the next load: the most private memory one copy
    #: has held (after calls, which grow a heap), and its share of pages it shares
    peak_private: int = 0
    shared_part: int = 0
    #: bytes reserved for a load in progress
    need: int = 0
    #: its place in the line for room while `_make_room` runs for it (policy.counts_against)
    in_line: int | None = None
    loaded_at: float = 0.0
    #: its minimum stay after this load (policy.Model.stay_s)
    stay_s: float = 0.0
    #: taking no new request so it can make room (policy.Drain); `parked`: requests
    #: waiting for it to go (they do not hold it, so they do not keep it loaded)
    draining: bool = False
    parked: int = 0
    #: requests answered lately, decaying by half every USES_HALF_LIFE_S (policy.keep_value)
    uses: float = 0.0
    uses_at: float = 0.0
    error: str | None = None
    traceback: str | None = None
    failures: int = 0  # consecutive failed loads
    retry_at: float = 0.0
    #: its demo was removed (--reload): requests still holding the slot load nothing more
    removed: bool = False
    #: its code was saved while it loaded (--reload): that load is out of date once ready
    outdated: bool = False
    stats: ModelStats = field(default_factory=ModelStats)

    @property
    def occupies(self) -> bool:
        return self.handle is not None or self.reserved

    def recent_uses(self, now: float) -> float:
        return self.uses * 0.5 ** ((now - self.uses_at) / USES_HALF_LIFE_S)

    def used(self, now: float) -> None:
        self.uses = self.recent_uses(now) + 1
        self.uses_at = now


class Registry:
    def __init__(self, specs: list[DemoSpec], sources: ModelSources, limits: Limits = Limits(), *,
                 backend: Backend, cores: int | None = None, measured: loadtimes.Measured | None = None):
        """`backend` is chosen by the caller (hub.py: `make_backend`): the registry
        never imports a mechanism."""
        self.limits = limits
        self.backend = backend
        self.cores = cores or usable_cores()
        self._sources = sources
        #: each model's last measured load, remembered across restarts (progress messages)
        self.measured = measured or loadtimes.Measured(None)
        self._slots = {spec.name: _Slot(spec) for spec in specs}
        for name, last in self.measured.all().items():  # the budget plans a restarted hub's loads from them
            if (name in self._slots and last.memory_metric == limits.memory_metric
                    and last.sizes_for == backend.name):
                self._slots[name].peak_private = last.peak_private_bytes
                self._slots[name].shared_part = last.shared_part_bytes
        #: concurrent requests share one call, for models whose spec allows batches
        #: (every backend runs such a model as one copy: `copies_allowed`)
        self._batchers = {s.name: batching.Batcher(s.name, s.max_batch) for s in specs if s.max_batch > 1}
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._line = itertools.count()  # places in the line for room (`_make_room`); read under _lock
        self._closed = threading.Event()
        #: handles `reload` took out of service, by id, until their running calls return
        self._retiring: dict[int, _Retiring] = {}
        self._janitor: threading.Thread | None = None

    # -- public API -----------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return list(self._slots)

    def spec(self, name: str) -> DemoSpec:
        return self._slots[name].spec

    def concurrency(self, name: str) -> int:
        """Requests one loaded model can really take at once (the tab's limit): those
        it runs, plus one staged behind each local worker's; for a batching model,
        the requests one call can carry."""
        spec = self._slots[name].spec
        if name in self._batchers:
            return spec.max_batch
        return max(1, self.backend.concurrency(spec))

    def predict(self, name: str, request: Any, progress: Progress | None = None) -> Any:
        """Run `request` through `name`'s model, loading it first if needed."""
        slot = self._slots[name]
        started = time.monotonic()
        with self._lock:
            slot.in_flight += 1
            slot.last_used = started
        ok = False
        retries = 0
        try:
            while True:
                handle = self._ensure_loaded(slot, progress)
                if handle.alive() and slot.handle is handle:
                    with self._lock:
                        slot.used(time.monotonic())
                    batcher = self._batchers.get(name)
                    try:
                        if batcher is None:
                            result = self._call(slot, handle, request)
                        else:
                            result = batcher.submit(request, lambda batch, w=handle: self._call(slot, w, batch),
                                                    slot.spec.predict_timeout_s)
                    except NotStarted:
                        # it waited behind a call that took its worker down and never ran:
                        # it runs on the restarted worker, within its own deadline
                        retries += 1
                        if retries > NOT_STARTED_RETRIES:
                            raise
                        continue
                    ok = True
                    return result
                # it died or was replaced between the load and the call: the next pass reloads
        finally:
            with self._lock:
                slot.in_flight -= 1
                slot.last_used = time.monotonic()
                self._room.notify_all()
            events.event("predict", name, quiet=True, seconds=time.monotonic() - started, ok=ok)

    def evict(self, name: str, reason: str = "manual") -> bool:
        """Evict `name` if it is loaded and idle; returns whether it was."""
        with self._lock:
            slot = self._slots[name]
            if slot.handle is None or slot.in_flight:
                return False
            handle = self._detach(slot, reason)
        self._evicted(slot, handle, reason)
        handle.stop()
        return True

    def reload(self, name: str, why: str, warm: bool = False) -> None:
        """`name`'s code or model folder changed (--reload): its handle takes no new
        request and ends after its running calls; the next request loads the new
        code at once (a failed load's back-off is forgotten: the author just saved).
        `warm`: if it was loaded or its last load failed, load it again now
        (`warm`), before the old process has finished ending."""
        with self._lock:
            slot = self._slots.get(name)
            if slot is None:
                return
            slot.failures, slot.retry_at = 0, 0.0
            failed = slot.state == State.FAILED
            if failed:
                slot.state, slot.error, slot.traceback = State.NOT_LOADED, None, None
            handle = slot.handle
            running = 0
            if handle is None and slot.load is not None:
                slot.outdated = True  # the load in progress read the old code: `_load` reloads it once ready
            if handle is not None:
                self._detach(slot, "reload")
                running = slot.calls - sum(r.calls for r in self._retiring.values() if r.handle is not handle)
                if running > 0:
                    self._retiring[id(handle)] = _Retiring(handle, running)
        events.event("reload", name, why=why, pid=handle.pid if handle else None, after_calls=running)
        if warm and (handle is not None or failed):  # in use, or the author is fixing its load
            self.warm(name)
        if handle is not None and running <= 0:
            handle.stop()

    def warm(self, name: str) -> None:
        """Load `name` now, in the background (--reload: a model that was loaded
        before a save is loaded again at once, so the author's next request finds
        the saved code ready, or its tab shows why it failed). The thread is the
        registry's; it ends with the load (its deadlines), or at `close`, which
        ends a load in progress."""
        with self._lock:
            slot = self._slots.get(name)
            if slot is None or slot.handle is not None or slot.load is not None or self._closed.is_set():
                return

        def run() -> None:
            try:
                self._ensure_loaded(slot, None)
            except Exception:  # noqa: BLE001 - recorded on the slot: its tab and the Status tab show it
                pass

        threading.Thread(target=run, daemon=True, name=f"warm-{name}").start()

    def add(self, spec: DemoSpec) -> None:
        """A demo found by rediscovery (--reload): a new slot, or a new SPEC for its slot."""
        with self._lock:
            slot = self._slots.get(spec.name)
            if slot is None:
                self._slots[spec.name] = _Slot(spec)
            else:
                slot.spec = spec
            if spec.max_batch > 1 and spec.name not in self._batchers:
                self._batchers[spec.name] = batching.Batcher(spec.name, spec.max_batch)

    def remove(self, name: str) -> None:
        """A demo whose folder is gone (--reload): its slot goes, its handle ends
        after its running calls, a load in progress is ended."""
        self.reload(name, "its demo was removed")
        with self._lock:
            slot = self._slots.pop(name, None)
            if slot is None:
                return
            slot.removed = True
            loading = slot.loading
            self._room.notify_all()
        if loading is not None:
            loading.kill("its demo was removed")

    def sweep(self) -> None:
        """Evict models idle past the TTL, notice dead workers, refresh memory,
        and hold the budget."""
        now = time.monotonic()
        to_stop, to_kill, to_shrink, deaths = [], [], [], []
        with self._lock:
            for slot in self._slots.values():
                handle = slot.handle
                if (handle is not None and handle.copies > 1
                        and now - slot.crowded_at > self.limits.copy_idle_ttl_s):
                    to_shrink.append(handle)  # it has not needed its extra copies for a while
                if handle is None or slot.state != State.READY or slot.calls:
                    continue  # a request inside the model owns what happens to it
                ttl = self.limits.idle_ttl_s
                if ttl is not None and not slot.in_flight and now - slot.last_used > ttl:
                    to_stop.append((slot, self._detach(slot, "idle")))
            checks = [(slot, slot.handle) for slot in self._slots.values()
                      if slot.handle is not None and slot.state == State.READY and not slot.calls]
        for slot, handle in checks:  # alive() may reap a child: never under the lock
            if not handle.alive():
                with self._lock:
                    if slot.handle is handle and not slot.calls:
                        deaths.append(self._record_death(slot, handle, "its worker died while idle"))
        for death in deaths:
            self._report_death(death)
            to_kill.append(death.handle)
        for slot, handle in to_stop:
            self._evicted(slot, handle, "idle")
        for handle in to_kill:
            handle.kill()
        for slot, handle in to_stop:
            handle.stop()
        for handle in to_shrink:
            handle.shrink()
        self.backend.sweep()
        self._hold_budget(keep=None)

    def start(self, interval_s: float = 1.0) -> None:
        """Start the background sweeper (idle TTL, crash detection, memory).

        The sweeper thread is owned by the registry and lives until `close()`."""

        def run() -> None:
            while not self._closed.wait(interval_s):
                try:
                    self.sweep()
                except Exception as exc:  # noqa: BLE001 - never let the janitor die
                    events.event("sweep_error", error=str(exc))

        self._janitor = threading.Thread(target=run, daemon=True, name="registry-sweeper")
        self._janitor.start()

    def close(self) -> None:
        """Stop every worker and the backend's shared processes (on shutdown)."""
        self._closed.set()
        with self._lock:
            handles = [(s, self._detach(s, "shutdown")) for s in self._slots.values() if s.handle]
            loading = [s.loading for s in self._slots.values() if s.loading is not None]
            retiring = [r.handle for r in self._retiring.values()]
            self._retiring.clear()
        for slot, handle in handles:
            self._evicted(slot, handle, "shutdown")
        for handle in retiring:
            handle.kill("shutdown")
        for handle in loading:
            handle.kill("shutdown")  # its loading thread then fails its waiting requests
        for _, handle in handles:
            handle.stop(grace=1.0)
        self.backend.close()
        if self._janitor is not None:
            self._janitor.join(timeout=5)

    def status(self) -> list[ModelStatus]:
        now = time.monotonic()
        out = []
        with self._lock:
            for slot in self._slots.values():
                source: SourceStatus = self._sources.status(slot.spec.name)
                state = slot.state
                retry_in = slot.retry_at - now if slot.retry_at > now else None
                if state == State.NOT_LOADED and source.state == SourceState.DOWNLOADING:
                    state = State.DOWNLOADING
                if state == State.NOT_LOADED and source.state == SourceState.FAILED:
                    state = State.FAILED
                    retry_in = source.retry_in_s
                out.append(
                    ModelStatus(
                        name=slot.spec.name,
                        title=slot.spec.title,
                        state=state,
                        source=slot.origin or source.source.describe(),
                        placeholder=slot.placeholder,
                        memory_bytes=slot.memory if slot.handle else 0,
                        in_flight=slot.in_flight,
                        idle_s=(now - slot.last_used) if slot.last_used else None,
                        error=slot.error or source.error,
                        download_fraction=source.fraction,
                        stats=slot.stats,
                        where=slot.handle.where if slot.handle else None,
                        copies=slot.handle.copies if slot.handle else 0,
                        traceback=slot.traceback,
                        retry_in_s=retry_in,
                    )
                )
        return out

    def totals(self) -> Totals:
        metric = self.limits.memory_metric
        shared = tuple(self.backend.shared(metric))
        with self._lock:
            loaded = [s for s in self._slots.values() if s.handle is not None]
            workers_memory = sum(s.memory for s in loaded)
        return Totals(
            loaded=len(loaded),
            max_models=self.limits.max_models,
            workers_memory_bytes=workers_memory,
            hub_memory_bytes=own_memory(metric),
            memory_budget=self.limits.memory_budget,
            memory_metric=metric,
            idle_ttl_s=self.limits.idle_ttl_s,
            shared=shared,
        )

    def worker_pids(self) -> dict[str, int]:
        with self._lock:
            return {n: s.handle.pid for n, s in self._slots.items()
                    if s.handle is not None and s.handle.pid is not None}

    # -- loading --------------------------------------------------------------------

    def _ensure_loaded(self, slot: _Slot, progress: Progress | None) -> ModelHandle:
        """The slot's ready worker, loading it first if needed. Followers wait on
        the leader's load, which is bounded by the download, capacity and load
        deadlines."""
        missed = False  # a request counts once: a hit, or a miss that waited for a load
        while True:
            with self._lock:
                handle = slot.handle if slot.state == State.READY else None
            if handle is not None and not handle.alive():  # may reap a child: outside the lock
                with self._lock:
                    death = self._record_death(slot, handle, "its worker died")
                self._report_death(death)
                death.handle.kill()
                continue
            with self._lock:
                if handle is not None and slot.handle is handle and slot.state == State.READY:
                    if slot.draining:  # it is making room for another model: wait for it to go
                        self._park(slot, handle)
                        continue
                    if not missed:
                        slot.stats.hits += 1
                    return handle
                if slot.handle is not None and slot.state == State.READY:
                    continue  # replaced while we looked: check the new one
                if slot.removed:
                    raise ModelUnavailable(f"The {slot.spec.name} demo was removed; reload the page.")
                load = slot.load
                leader = load is None
                if leader:
                    wait = slot.retry_at - time.monotonic()
                    if wait > 0:
                        raise ModelUnavailable(
                            f"The {slot.spec.name} model failed to load {slot.failures} time(s); the next "
                            f"try is in {wait:.0f} s. The operator can see why on the Status tab.")
                    load = slot.load = _Load()
                if not missed:
                    slot.stats.misses += 1
                    missed = True
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

    def _park(self, slot: _Slot, handle: ModelHandle) -> None:
        """Wait (with the lock held, released while waiting) until a draining model
        has gone or stopped draining, within the capacity deadline."""
        deadline = time.monotonic() + self.limits.capacity_wait_s
        slot.parked += 1
        try:
            while slot.draining and slot.handle is handle:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise HubAtCapacity(f"The {slot.spec.name} model is making room for another model and "
                                        "is reloaded after it. Try again in a moment.")
                self._room.wait(min(remaining, 0.5))
        finally:
            slot.parked -= 1

    def _wait_for_load(self, slot: _Slot, load: _Load, progress: Progress | None) -> None:
        started = time.monotonic()
        while not load.done.wait(0.25):
            if progress:
                self._report_progress(slot, progress, started)
        error = load.error
        if isinstance(error, HubError):
            raise type(error)(str(error))
        if error is not None:
            raise WorkerFailed(f"loading the {slot.spec.name} model failed; try again in a moment")

    def _report_progress(self, slot: _Slot, progress: Progress, started: float) -> None:
        name = slot.spec.name
        if slot.state == State.DOWNLOADING:
            source = self._sources.status(name)
            fraction = source.fraction
            done_mb = source.downloaded_bytes / 2**20
            total = f" of {source.total_bytes / 2**20:.0f} MB" if source.total_bytes else ""
            progress(fraction, f"downloading {name} model, {done_mb:.0f} MB{total}")
            return
        if slot.state == State.WAITING:
            progress(None, f"waiting for room to load the {name} model: other models are busy or the "
                           "memory budget is full")
            return
        progress(*loadtimes.progress_text(name, time.monotonic() - started, slot.stats.last_load_s,
                                          self.measured.get(name), slot.spec.expected_load_s))

    def _load(self, slot: _Slot, progress: Progress | None) -> None:
        name = slot.spec.name
        started = time.monotonic()

        def tick(*_: object) -> None:
            if progress:
                self._report_progress(slot, progress, started)

        downloads = self._sources.status(name).source.is_hub
        with self._lock:
            before = slot.state
            slot.state = State.DOWNLOADING if downloads else State.WAITING
        try:
            resolved = self._sources.resolve(name, tick=tick)
            with self._lock:
                slot.state = State.WAITING
            self._make_room(slot, tick)
        except HubAtCapacity as exc:
            with self._lock:  # capacity is not the model's failure
                slot.state = before
                self._room.notify_all()
            events.event("at_capacity", name, error=str(exc))  # the operator's record of a refused load
            raise
        except BaseException as exc:
            self._load_failed(slot, exc)
            raise
        try:
            with self._lock:
                slot.state = State.LOADING
            started = wall = time.monotonic()
            tick()
            try:
                handle, info = self._start(slot, resolved, tick)
            except WorkerFailed as exc:
                if not exc.from_outside or self._closed.is_set():
                    raise
                # killed or paused from outside, not the demo's fault: once more at
                # once, before any back-off (a kill storm should not lock a tab out)
                events.event("load_retry", name, error=str(exc)[:300])
                handle, info = self._start(slot, resolved, tick)
        except HubError as exc:
            self._load_failed(slot, exc)
            raise
        except Exception as exc:  # noqa: BLE001 - a fault in the mechanism: logged in full, told in a sentence
            failure = ModelError(f"The {name} model could not be started; the operator can see why on the "
                                 "Status tab and in the server log. Try again in a moment.",
                                 detail=traceback.format_exc())
            self._load_failed(slot, failure)
            raise failure from None
        except BaseException as exc:
            self._load_failed(slot, exc)
            raise
        memory, private = self._measure_one(handle)
        with self._lock:
            slot.handle = handle
            slot.reserved = False
            slot.need = 0
            slot.loaded_at = time.monotonic()
            slot.stay_s = 2 * (slot.loaded_at - wall)
            slot.placeholder = resolved.placeholder
            slot.origin = resolved.origin
            slot.state = State.READY
            slot.error = slot.traceback = None
            slot.failures = 0
            slot.retry_at = 0.0
            self._remember(slot, handle, memory, private)
            slot.stats.loads += 1
            slot.stats.last_load_s = info.seconds
            slot.stats.load_seconds_total += info.seconds
            slot.last_used = time.monotonic()
        events.event(
            "load", name, seconds=info.seconds, memory_mb=round(memory / 2**20, 1),
            pid=handle.pid, where=handle.where, origin=resolved.origin,
        )
        with self._lock:
            peak, shared_part = slot.peak_private, slot.shared_part
        self.measured.record(name, info.seconds, memory, self.limits.memory_metric,
                             download_bytes=self._sources.status(name).total_bytes,
                             peak_private_bytes=peak, shared_part_bytes=shared_part, sizes_for=self.backend.name)
        self._hold_budget(keep=slot)
        with self._lock:
            outdated, slot.outdated = slot.outdated, False
        if outdated:  # its waiting requests load the saved code next (`_ensure_loaded` loops)
            self.reload(name, "its code was saved while it loaded")

    def _start(self, slot: _Slot, resolved, tick: Callable[[], None]) -> tuple[ModelHandle, Any]:
        """Start `slot`'s model and wait until it is ready (the load deadline).
        A failure from outside the demo (its process killed or paused by someone
        else) is marked `from_outside` for `_load` to retry."""
        handle = self.backend.start(slot.spec, resolved.path, placeholder=resolved.placeholder)
        with self._lock:
            slot.loading = handle
            closing = self._closed.is_set()
        try:
            if closing:
                raise WorkerFailed("the hub is shutting down")
            return handle, handle.wait_ready(slot.spec.load_timeout_s, tick=tick)
        except WorkerFailed as exc:
            exc.from_outside = handle.ended_by_hub() in (None, "paused")
            handle.kill("load failed")
            raise
        except BaseException:
            handle.kill("load failed")
            raise
        finally:
            with self._lock:
                slot.loading = None

    def _load_failed(self, slot: _Slot, exc: BaseException) -> None:
        detail = getattr(exc, "detail", "") or str(exc)
        with self._lock:
            slot.reserved = False
            slot.need = 0
            slot.state = State.FAILED
            slot.error = detail.strip().splitlines()[0][:300] if detail.strip() else type(exc).__name__
            slot.traceback = detail
            slot.failures += 1
            wait = policy.retry_after(slot.failures, self.limits.load_retry_s, self.limits.load_retry_cap_s)
            slot.retry_at = time.monotonic() + wait
            slot.stats.load_failures += 1
            self._room.notify_all()
        events.event("load_failed", slot.spec.name, error=detail[:4000], retry_in_s=wait)

    def _make_room(self, slot: _Slot, tick: Callable[[], None] | None = None) -> None:
        """Reserve a place for `slot`, freeing memory or places as `policy.room_for`
        says, or waiting for a model to become idle, until the capacity deadline.

        A reserved load counts at what it is expected to add (`_need`), so two
        concurrent first loads cannot both fit under a budget meant for one."""
        deadline = time.monotonic() + self.limits.capacity_wait_s
        drained: list[_Slot] = []
        with self._lock:
            slot.in_line = next(self._line)
        try:
            self._make_room_until(slot, deadline, tick, drained)
        except BaseException:
            with self._lock:
                slot.reserved = False
                slot.need = 0
            raise
        finally:
            with self._lock:
                slot.in_line = None  # starting now (a reservation every other load counts), or gave up
                for other in drained:  # made room, or gave up: either way it serves again
                    other.draining = False
                self._room.notify_all()

    def _make_room_until(self, slot: _Slot, deadline: float, tick, drained: list[_Slot]) -> None:
        """`_make_room`'s loop; models it drains are listed in `drained`."""
        shared_tried = False
        while True:
            need = self._need(slot)  # again each pass: a load that just finished may have measured more
            snap = self._snapshot(exclude=slot, fresh=True)
            with self._lock:
                action = policy.room_for(snap, need, self._rules(), shared_tried, need_known=bool(slot.peak_private))
                if isinstance(action, policy.Fits):
                    slot.reserved = True
                    slot.need = need
                    return
                if isinstance(action, policy.Drain):
                    self._slots[action.name].draining = True
                    drained.append(self._slots[action.name])
                    self._room.notify_all()
                if isinstance(action, (policy.Wait, policy.Drain)):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise HubAtCapacity(_at_capacity(action, slot.spec.name, [m.name for m in snap.models]))
                    self._room.wait(min(remaining, 0.5))
                    waited = True
                else:
                    waited = False
                    evicted = self._take(action)
                    if evicted is not None:  # the place it frees is this load's: hold it now, or
                        slot.reserved = True  # the evicted model's own waiting requests take it back
                        slot.need = need
            if waited:
                if tick:
                    tick()  # outside the lock: it reports progress to the caller
                continue
            shared_tried |= isinstance(action, policy.EndIdleShared)
            self._carry_out(action, evicted, keep={slot.spec.name})

    def _hold_budget(self, keep: _Slot | None) -> None:
        """Bring the measured total back under the budget (`policy.within_budget`),
        never evicting `keep`, the model that just loaded for its waiting requests."""
        if self.limits.memory_budget is None:
            return
        shared_tried = False
        for _ in range(len(self._slots) * 4 + 4):  # each pass frees something; bounded all the same
            snap = self._snapshot(exclude=None, fresh=keep is not None)
            with self._lock:
                action = policy.within_budget(snap, self._rules(), keep.spec.name if keep else None,
                                              shared_tried)
                evicted = None if isinstance(action, (policy.Fits, policy.OverBudget)) else self._take(action)
            if isinstance(action, policy.Fits):
                return
            if isinstance(action, policy.OverBudget):
                if keep is not None:  # report once per load, not on every sweep
                    events.event("over_budget", keep.spec.name, memory_mb=round(action.total / 2**20, 1))
                return
            shared_tried |= isinstance(action, policy.EndIdleShared)
            self._carry_out(action, evicted, keep={keep.spec.name} if keep else set())

    def _rules(self) -> policy.Rules:
        return policy.Rules(self.limits.max_models, self.limits.memory_budget, self.limits.min_stay_s,
                            self.limits.eviction)

    def _take(self, action: policy.Action) -> tuple[_Slot, ModelHandle] | None:
        """The bookkeeping half of an eviction (call with the lock held): the
        model is detached now, so no request can pick it; it ends in `_carry_out`."""
        if isinstance(action, policy.Evict):
            victim = self._slots[action.name]
            if victim.handle is not None and victim.in_flight == victim.parked and victim.state == State.READY:
                return victim, self._detach(victim, action.reason)
        return None

    def _carry_out(self, action: policy.Action, evicted: tuple[_Slot, ModelHandle] | None,
                   keep: set[str]) -> None:
        """The slow half of a decision, outside the lock."""
        if evicted is not None:
            slot, handle = evicted
            self._evicted(slot, handle, action.reason)  # type: ignore[union-attr]
            handle.stop()
        elif isinstance(action, policy.ShrinkCopy):
            with self._lock:
                handle = self._slots[action.name].handle
            if handle is not None:
                handle.shrink()
        elif isinstance(action, policy.EndIdleShared):
            with self._lock:
                needed = keep | {n for n, s in self._slots.items() if s.occupies}
            self.backend.trim(needed)

    def _need(self, slot: _Slot) -> int:
        """What loading `slot`'s model will add (policy.load_need). A fresh process
        (start cost None) adds its shared pages too: nobody may map its libraries yet."""
        start = self.backend.start_cost(slot.spec)
        with self._lock:
            known = [s for s in self._slots.values() if s.peak_private]
            if start is None:
                own = slot.peak_private + slot.shared_part if slot.peak_private else None
                return policy.load_need(own, 0, [s.peak_private + s.shared_part for s in known])
            return policy.load_need(slot.peak_private or None, start, [s.peak_private for s in known])

    def _measure_one(self, handle: ModelHandle) -> tuple[int, int]:
        """(held by the budget's metric, private) for one handle; outside the lock."""
        metric = self.limits.memory_metric
        held = handle.memory(metric)
        private = handle.memory("uss") if metric == "pss" else held
        return held, private

    def _remember(self, slot: _Slot, handle: ModelHandle, held: int, private: int) -> None:
        """Record a measurement of `slot`'s handle (call with the lock held)."""
        if slot.handle is not handle or not held:
            return
        slot.memory, slot.private = held, private
        copies = max(1, handle.copies + (1 if handle.growing else 0))  # a copy being added is measured too
        slot.peak_private = max(slot.peak_private, private // copies)
        slot.shared_part = max(0, held - private) // copies

    def _snapshot(self, exclude: _Slot | None, fresh: bool) -> policy.Snapshot:
        """Measure every loaded model and shared process (outside the lock), then
        take the policy's view of the registry under it."""
        with self._lock:
            loaded = [(s, s.handle) for s in self._slots.values() if s.handle is not None]
        measured = [(s, w, *self._measure_one(w)) for s, w in loaded]
        shared = ()
        if self.limits.memory_budget is not None:
            shared = tuple(policy.Shared(p.name, p.memory_bytes, p.idle)
                           for p in self.backend.shared(self.limits.memory_metric, fresh=fresh))
        with self._lock:
            mine = exclude.in_line if exclude is not None else None
            loads = [s for s in self._slots.values() if s.reserved and s.handle is None and s is not exclude
                     and policy.counts_against(s.in_line, mine)]
            blind_ahead = sum(1 for s in self._slots.values() if s is not exclude and not s.peak_private
                              and s.in_line is not None and mine is not None and s.in_line < mine)
        # a load in progress counts at what it will add from now: its template, once
        # started, is measured above, so its need is asked again rather than kept
        reserved = sum(self._need(s) for s in loads)
        now = time.monotonic()
        with self._lock:
            for slot, handle, held, private in measured:
                self._remember(slot, handle, held, private)
            models = tuple(
                policy.Model(
                    name=s.spec.name, held=s.memory, frees=s.private or s.memory,
                    evictable=s.in_flight == s.parked and s.state == State.READY, draining=s.draining,
                    last_used=s.last_used, loaded_at=s.loaded_at,
                    reload_s=s.stats.last_load_s or s.spec.expected_load_s or 1.0,
                    recent_uses=int(s.recent_uses(now)),
                    spare_copy=s.handle.copies > 1 and s.calls < s.handle.copies, stay_s=s.stay_s,
                    copy_frees=s.private // max(1, s.handle.copies))
                for s in self._slots.values() if s.handle is not None and s is not exclude)
            return policy.Snapshot(models, shared, reserved=reserved, loading=len(loads), now=now,
                                   blind_ahead=blind_ahead)

    # -- calling --------------------------------------------------------------------

    def _grant_threads(self, slot: _Slot) -> int:
        """CPU threads for a call of `slot`'s model about to start (call with the
        lock held): `policy.threads_for` over the calls running now."""
        running = sum(min(s.calls, s.handle.copies) for s in self._slots.values() if s.handle is not None)
        return policy.threads_for(self.limits.worker_threads, slot.stats.mean_call_s(), self.limits.threads_min_call_s,
                                  self.cores, running)

    def _copy_fits(self, slot: _Slot, handle: ModelHandle) -> bool:
        """Whether one more copy of `slot`'s model fits the memory budget: the
        total as last measured (the sweeper's readings: this runs on busy calls,
        too often to read /proc) plus one copy's private memory."""
        budget = self.limits.memory_budget
        if budget is None:
            return True
        shared = sum(p.memory_bytes for p in self.backend.shared(self.limits.memory_metric))
        with self._lock:
            if slot.handle is not handle or not handle.copies:
                return False
            one_copy = slot.peak_private or slot.private // handle.copies
            held = shared + sum(s.memory if s.handle is not None else s.need * s.reserved
                                for s in self._slots.values())
        return policy.copy_fits(budget, held, one_copy)

    def _call(self, slot: _Slot, handle: ModelHandle, request: Any) -> Any:
        """One call, bounded by the demo's predict deadline from the moment its
        model is ready (waiting for the model to be free counts against it)."""
        with self._lock:
            if slot.handle is not handle:  # `reload` took it out of service before this call began
                raise NotStarted("the model was reloaded before this call began")
            slot.calls += 1
            threads = self._grant_threads(slot)
            if slot.calls > 1:
                slot.crowded_at = time.monotonic()
            wants_copy = slot.calls > handle.copies
        if (wants_copy and policy.copy_pays(slot.stats.mean_call_s(), self.limits.copy_min_call_s)
                and self._copy_fits(slot, handle)):
            handle.grow()
        to_kill: list[ModelHandle] = []
        try:
            result = handle.call(request, slot.spec.predict_timeout_s, threads=threads)
        except (InputError, ModelBusy):
            raise
        except CopyFailed as exc:  # one copy of several: the others keep serving
            with self._lock:
                if exc.crashed:
                    slot.stats.crashes += 1
                else:
                    slot.stats.timeouts += 1
            events.event("copy_failed_call", slot.spec.name, error=str(exc)[:300], crashed=exc.crashed)
            raise
        except ModelError as exc:
            with self._lock:
                slot.stats.errors += 1
                slot.error = (exc.detail or str(exc)).strip().splitlines()[0][:300]
                slot.traceback = exc.detail
            events.event("predict_error", slot.spec.name, error=exc.detail[:4000])
            raise
        except WorkerFailed as exc:
            with self._lock:
                if isinstance(exc, WorkerTimeout):
                    slot.stats.timeouts += 1
                death = self._record_death(slot, handle, str(exc))
            self._report_death(death)
            to_kill.append(death.handle)
            raise
        finally:
            retired = None
            with self._lock:
                slot.calls -= 1
                retiring = self._retiring.get(id(handle))
                if retiring is not None and retiring.handle is handle:
                    retiring.calls -= 1
                    if retiring.calls <= 0:
                        retired = self._retiring.pop(id(handle)).handle
            for dead in to_kill:
                dead.kill()
            if retired is not None:
                retired.stop()
        failed = batching.error_details(request, result.value)
        with self._lock:
            slot.stats.predictions += batching.answered(request, result.value)
            slot.stats.predict_seconds_total += result.seconds
            slot.stats.errors += len(failed)
            if failed:
                slot.error, slot.traceback = failed[-1].strip().splitlines()[0][:300], failed[-1]
        for detail in failed:
            events.event("predict_error", slot.spec.name, error=detail[:4000])
        return result.value

    # -- bookkeeping (call with the lock held) -----------------------------------------

    def _detach(self, slot: _Slot, reason: str) -> ModelHandle:
        """Take the model out of service; the caller reports it (`_evicted`) and
        ends it, both outside the lock."""
        handle = slot.handle
        assert handle is not None
        slot.handle = None
        slot.memory = slot.private = 0
        slot.draining = False
        slot.state = State.EVICTED
        slot.stats.evictions[reason] += 1
        self._room.notify_all()
        return handle

    def _record_death(self, slot: _Slot, handle: ModelHandle, why: str) -> _Death:
        """Forget a worker that died or was killed; the caller reports it
        (`_report_death`) and ends it outside the lock. Only a death the hub did not
        cause is a crash, and only the first to notice records it."""
        if slot.handle is not handle:
            return _Death(handle, slot.spec.name, why, crash=False)
        slot.handle = None
        slot.memory = slot.private = 0
        slot.draining = False
        slot.state = State.FAILED
        slot.error = why
        crash = handle.ended_by_hub() is None
        if crash:
            slot.stats.crashes += 1
        self._room.notify_all()
        return _Death(handle, slot.spec.name, why, crash)

    # -- events (call without the lock) ---------------------------------------------

    def _evicted(self, slot: _Slot, handle: ModelHandle, reason: str) -> None:
        idle_s = time.monotonic() - slot.last_used if slot.last_used else 0.0
        events.event("evict", slot.spec.name, reason=reason, idle_s=idle_s, pid=handle.pid)
        with self._lock:
            peak, shared_part = slot.peak_private, slot.shared_part
        self.measured.sizes(slot.spec.name, peak, shared_part, self.backend.name)  # grown since it loaded

    @staticmethod
    def _report_death(death: "_Death") -> None:
        if death.crash:
            events.event("crash", death.name, pid=death.handle.pid, error=death.why[:300])


@dataclass(frozen=True)
class _Death:
    """A handle found dead or failed: ended by its finder, reported if a crash."""

    handle: ModelHandle
    name: str
    why: str
    crash: bool
