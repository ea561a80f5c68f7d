"""Copies of one model: a second local worker for a model whose requests pile up.

A local worker process runs one call at a time, so a busy model queues even
when the machine has a free core. `Copies` wraps the handles a local backend
starts for one model and hands each call to the least busy copy (a copy takes
as many calls at once as its backend's `concurrency`: one running, one staged).
It is pure mechanism: the registry decides when a copy is added (`grow`: every
copy busy, and the memory budget has room for one more) and when one goes
(`shrink`: the model has not needed its extra copies for a while, or the budget
needs room); this module only starts, routes, measures and ends them.

Threads: a `grow` starts one daemon thread that lives until that copy is ready
or has failed (bounded by the demo's load deadline, and cut short by `kill`).
One lock per model (`_lock`) guards the lists of copies; nothing slow runs
under it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

from demohub import events, policy
from demohub.backends import Backend, CallResult, LoadInfo, ModelHandle, SharedProcess, Tick
from demohub.errors import CopyFailed, InputError, ModelBusy, ModelError, NotStarted, WorkerFailed, WorkerTimeout
from demohub.spec import DemoSpec

class Copies:
    """One model served by one to `max_copies` local worker processes."""

    def __init__(self, spec: DemoSpec, start: Callable[..., ModelHandle], max_copies: int,
                 extra_threads: int | None = None, depth: int = 1, retry_s: float = policy.COPY_RETRY_S):
        self.spec = spec
        self.retry_s = retry_s  # after a copy failed to start, the next is not tried for this long
        self.max_copies = max_copies
        self.depth = depth  # calls one copy takes at once
        self._start = start
        self._extra_threads = extra_threads
        self._lock = threading.Lock()
        self._free = threading.Condition(self._lock)
        first = start()
        self._first = first
        self._copies: list[ModelHandle] = [first]  # started, ready or not
        self._ready: dict[ModelHandle, int] = {}  # ready copies, and the calls each holds now
        self._pending: ModelHandle | None = None  # a copy being added
        self._growing = False
        self._grow_after = 0.0
        self._ended: str | None = None
        #: why the last copy that was lost ended (None: it crashed), for ended_by_hub()
        self._lost_reason: str | None = None

    # -- ModelHandle ----------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        copies = self._copies
        return copies[0].pid if copies else self._first.pid

    @property
    def where(self) -> str:
        copies = list(self._copies)
        if len(copies) <= 1:
            return (copies or [self._first])[0].where
        return f"{len(copies)} copies: " + ", ".join(c.where for c in copies)

    @property
    def copies(self) -> int:
        return len(self._copies)

    @property
    def growing(self) -> bool:
        return self._pending is not None

    def wait_ready(self, timeout: float, tick: Tick | None = None) -> LoadInfo:
        info = self._first.wait_ready(timeout, tick)
        with self._lock:
            if self._first in self._copies:
                self._ready[self._first] = 0
                self._free.notify_all()
        return info

    def call(self, request: Any, timeout: float, threads: int | None = None) -> CallResult:
        """Run on the least busy copy, waiting for room (or for a copy being added)
        within `timeout`; a call whose copy failed before it started goes to another."""
        deadline = time.monotonic() + timeout
        while True:
            copy = self._take(deadline, timeout)
            if not copy.alive():  # it died while idle: drop it, and this request waits for another
                self._drop(copy, crashed=copy.ended_by_hub() is None)
                continue
            try:
                result = copy.call(request, max(0.0, deadline - time.monotonic()), threads)
            except (InputError, ModelError, ModelBusy):
                self._release(copy)
                raise
            except NotStarted:  # staged behind a call that failed with its copy: it never ran
                self._set_aside(copy)
                continue
            except WorkerFailed as exc:
                crashed = not isinstance(exc, WorkerTimeout) and copy.ended_by_hub() is None
                if self._drop(copy, crashed):
                    raise CopyFailed(str(exc), crashed=crashed) from None
                raise
            except BaseException:
                self._release(copy)
                raise
            self._release(copy)
            return result

    def alive(self) -> bool:
        """Any copy alive (or one being added); copies found dead are dropped."""
        with self._lock:
            copies = list(self._copies)
        for copy in copies:
            if not copy.alive():
                self._drop(copy, crashed=copy.ended_by_hub() is None)
        with self._lock:
            return self._ended is None and bool(self._copies or self._growing)

    def ended_by_hub(self) -> str | None:
        with self._lock:
            return self._ended or self._lost_reason

    def memory(self, metric: str) -> int:
        """Every copy's, a copy still loading included: its memory is already in use."""
        with self._lock:
            copies = list(self._copies) + ([self._pending] if self._pending is not None else [])
        return sum(c.memory(metric) for c in copies)

    def stop(self, grace: float = 2.0) -> None:
        """Every copy at once, each with its own `grace` (a thread per copy, joined here)."""
        stopping = [threading.Thread(target=c.stop, args=(grace,), daemon=True, name="copy-stop")
                    for c in self._end("stopped")]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join(grace + 6.0)

    def kill(self, reason: str = "killed") -> None:
        for copy in self._end(reason):
            copy.kill(reason)

    # -- what the registry decides ------------------------------------------------------------

    def grow(self) -> bool:
        """Start one more copy in the background; False if at the cap, already
        adding one, backing off after a failed one, or ended."""
        with self._lock:
            if (self._ended or self._growing or len(self._copies) >= self.max_copies
                    or time.monotonic() < self._grow_after):
                return False
            self._growing = True
        threading.Thread(target=self._add_copy, daemon=True, name=f"copy-{self.spec.name}").start()
        return True

    def shrink(self) -> bool:
        """End the newest idle copy beyond the first; False if every extra copy is busy."""
        with self._lock:
            spare = [c for c in self._copies[1:] if self._ready.get(c) == 0]
            if not spare:
                return False
            copy = spare[-1]  # the newest: the oldest copy stays, as does its PID on the Status tab
            del self._ready[copy]
            self._copies.remove(copy)
            left = len(self._copies)
        events.event("copy_end", self.spec.name, pid=copy.pid, copies=left, reason="not needed")
        copy.stop()
        return True

    # -- inside ---------------------------------------------------------------------------------

    def _add_copy(self) -> None:
        """The growing thread: start a copy, wait for it to load, put it to work."""
        name, copy, added, started = self.spec.name, None, False, time.monotonic()
        try:
            copy = self._start(threads=self._extra_threads)
            with self._lock:
                self._pending = copy
                ended = self._ended
            if ended:
                return
            info = copy.wait_ready(self.spec.load_timeout_s)
            with self._lock:
                if self._ended is None:
                    self._copies.append(copy)
                    self._ready[copy] = 0
                    added = True
                    count = len(self._copies)
            if added:
                events.event("copy_ready", name, pid=copy.pid, seconds=round(info.seconds, 3),
                             copies=count, wall_s=round(time.monotonic() - started, 3))
        except Exception as exc:  # noqa: BLE001 - a copy that cannot start costs only itself
            with self._lock:
                self._grow_after = time.monotonic() + self.retry_s
            events.event("copy_failed", name, error=(getattr(exc, "detail", "") or str(exc))[:4000],
                         retry_in_s=self.retry_s)
        finally:
            with self._lock:
                self._pending = None
                self._growing = False
                self._free.notify_all()
            if copy is not None and not added:
                copy.kill("not needed")

    def _take(self, deadline: float, timeout: float) -> ModelHandle:
        """The least busy copy with room for a call, waiting for one (or for a copy
        being added) until `deadline`."""
        name = self.spec.name
        with self._lock:
            while True:
                copy = min(self._ready, key=self._ready.__getitem__, default=None)
                if copy is not None and self._ready[copy] < self.depth:
                    self._ready[copy] += 1
                    return copy
                if self._ended or not (self._copies or self._growing):  # this call never started
                    raise NotStarted(f"the {name} model's worker has ended; it will restart on the "
                                     "next request")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ModelBusy(f"The {name} model stayed busy with other requests for "
                                    f"{timeout:.0f} s; try again in a moment.")
                self._free.wait(remaining)

    def _release(self, copy: ModelHandle) -> None:
        with self._lock:
            if copy in self._ready:
                self._ready[copy] -= 1
                self._free.notify()

    def _set_aside(self, copy: ModelHandle) -> None:
        """Route no more calls to a copy whose call ahead failed; that call's caller
        ends it and says why (`_drop`), as only it knows whether it was a crash."""
        with self._lock:
            self._ready.pop(copy, None)

    def _drop(self, copy: ModelHandle, crashed: bool) -> bool:
        """Forget a copy that failed; returns whether the model still has others."""
        with self._lock:
            lost_now = copy in self._copies  # the sweeper may find it dead too: it is lost once
            if lost_now:
                self._copies.remove(copy)
                self._ready.pop(copy, None)
                self._lost_reason = None if crashed else (copy.ended_by_hub() or "failed")
            others = bool(self._copies or self._growing)
            self._free.notify_all()
        copy.kill("failed")
        if others and lost_now:
            events.event("copy_lost", self.spec.name, pid=copy.pid, crashed=crashed)
        return others

    def _end(self, reason: str) -> list[ModelHandle]:
        with self._lock:
            if self._ended is None:
                self._ended = reason
            copies = list(self._copies) + ([self._pending] if self._pending is not None else [])
            if self._first not in copies:
                copies.append(self._first)  # a first copy that never became ready
            self._free.notify_all()
        return copies


class CopiesBackend:
    """A local backend (spawn or template) whose models may run as several copies."""

    def __init__(self, inner: Backend, max_copies: int, extra_threads: int | None = None,
                 retry_s: float = policy.COPY_RETRY_S):
        self.inner = inner
        self.retry_s = retry_s
        self.name = inner.name
        self.max_copies = max(1, max_copies)
        self.extra_threads = extra_threads

    def start(self, spec: DemoSpec, model_dir: Path, *, placeholder: bool, threads: int | None = None) -> Copies:
        first_threads = threads

        def start_one(threads: int | None = first_threads) -> ModelHandle:
            return self.inner.start(spec, model_dir, placeholder=placeholder, threads=threads)

        return Copies(spec, start_one, self._most(spec), self.extra_threads,
                      depth=self.inner.concurrency(spec), retry_s=self.retry_s)

    def _most(self, spec: DemoSpec) -> int:
        return policy.copies_allowed(spec.max_batch, spec.max_copies, self.max_copies)

    def concurrency(self, spec: DemoSpec) -> int:
        return self._most(spec) * self.inner.concurrency(spec)

    def shared(self, metric: str, fresh: bool = False) -> list[SharedProcess]:
        return self.inner.shared(metric, fresh)

    def start_cost(self, spec: DemoSpec) -> int | None:
        return self.inner.start_cost(spec)

    def trim(self, keep: set[str] = frozenset()) -> int:
        return self.inner.trim(keep)

    def sweep(self) -> None:
        self.inner.sweep()

    def close(self) -> None:
        self.inner.close()
