"""How a model is run: the one small interface between the registry's policy
(what to load, when to evict, what the budget allows) and the mechanisms that
start, call, measure and end a model.

Each mechanism is one module (for Ray, a subpackage) in this package:

- `spawn`: a fresh `python -m demohub.backends.local.worker` process per model (`--start-method spawn`).
- `template`: workers forked from a per-framework template process that has
  already imported the framework (`--start-method template`, the default).
- `copies`: wraps `spawn` or `template` so one model may run as several
  worker processes when its requests pile up (`--max-copies`).
- `ray`: one Ray Serve application per demo (`--backend ray`); a package:
  the Ray head, the replica, and the hub side.

The registry only ever sees `Backend` and `ModelHandle` (it never imports a
mechanism); `make_backend` is the one place that picks one.

Words, each with one meaning across the hub:
- a *handle* (`ModelHandle`) runs one model, whatever runs it: one worker
  process, several *copies* of it (`copies.py`), or a Ray Serve application;
- *stop*: end a handle politely (its running call may finish, then a kill after
  the grace); *kill*: end it now; both are mechanisms, said by the caller;
- *evict*: the registry's choice to stop a loaded model (idle, memory, room,
  shutdown, manual); *shrink*: end one idle extra copy; *trim*: end idle shared
  processes (templates); *close*: end everything a backend started, at shutdown;
- a *death*: a handle found ended that the registry did not stop (a crash, a
  kill or a pause from outside, a call past its deadline); *drop*: forget a
  copy or a template that failed, so the next call starts another.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from demohub import policy
from demohub.spec import DemoSpec

#: Called now and then while a load waits, so the caller can report progress.
Tick = Callable[[], None]


@dataclass(frozen=True)
class LoadInfo:
    """What a model reported once it was ready."""

    seconds: float


@dataclass(frozen=True)
class CallResult:
    value: Any
    #: seconds spent inside the runtime's predict (not the hop to and from it)
    seconds: float


@dataclass(frozen=True)
class SharedProcess:
    """A process a backend keeps besides the models themselves (a framework
    template, Ray's own daemons): its memory counts in the budget and on the
    Status tab."""

    name: str
    pid: int | None
    memory_bytes: int
    #: True when no loaded model needs it, so `Backend.trim` may end it.
    idle: bool


class ModelHandle(Protocol):
    """One model being served, however it runs (a process, a forked child, a
    Ray deployment). Every method that waits takes a deadline."""

    @property
    def pid(self) -> int | None:
        """The local process serving the model, or None if it is not local."""

    @property
    def where(self) -> str:
        """Where it runs, for people: "pid 1234", "ray: 1 replica on node 3f2a"."""

    @property
    def copies(self) -> int:
        """Copies of the model serving now (a local process: 1 while it lives)."""

    def wait_ready(self, timeout: float, tick: Tick | None = None) -> LoadInfo:
        """Block until the model is loaded; raises WorkerFailed / WorkerTimeout."""

    def call(self, request: Any, timeout: float, threads: int | None = None) -> CallResult:
        """Run one prediction within `timeout` seconds, covering every wait (for
        the model to be free, sending, computing, receiving). `threads` is the
        CPU threads the registry grants this call. Raises InputError for bad
        input, WorkerTimeout / WorkerFailed otherwise."""

    def alive(self) -> bool: ...

    def ended_by_hub(self) -> str | None:
        """Why the hub ended it (a timeout, an eviction), or None. A handle that
        died without the hub's doing is a crash; one the hub ended is not."""

    def memory(self, metric: str) -> int:
        """Bytes it holds, by `metric` (pss, uss, rss); 0 once it has ended."""

    def stop(self, grace: float = 2.0) -> None:
        """End it politely, then by force after `grace` seconds; never blocks longer."""

    def kill(self, reason: str = "killed") -> None:
        """End it now; `reason` becomes `ended_by_hub()`."""

    def grow(self) -> bool:
        """Start one more copy in the background, for a model whose requests pile
        up; False when this handle cannot (one process; Ray Serve scales its own)."""

    def shrink(self) -> bool:
        """End one idle copy beyond the first; False when there is none."""

    @property
    def growing(self) -> bool:
        """A copy is being added: `memory()` already counts it, `replicas` not yet."""


def usable_cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0))


class OneCopy:
    """For handles that are one copy, or whose copies someone else scales."""

    #: a copy is being added (its memory is already counted in `memory()`)
    growing = False

    def grow(self) -> bool:
        return False

    def shrink(self) -> bool:
        return False


class Backend(Protocol):
    """Starts models. One per hub, owned by the registry, closed with it."""

    name: str

    def start(self, spec: DemoSpec, model_dir: Path, *, placeholder: bool,
              threads: int | None = None) -> ModelHandle:
        """Begin loading `spec`'s model from `model_dir`; returns at once. `threads`:
        the CPU threads the process starts with (an extra copy, started because
        calls already run at once, takes its share); None lets the backend decide
        (a Ray replica: its `num_cpus`)."""

    def concurrency(self, spec: DemoSpec) -> int:
        """How many calls the hub may hand one loaded model of `spec` at once (a
        local worker: one running and one staged; Ray: one per replica)."""

    def shared(self, metric: str, fresh: bool = False) -> list[SharedProcess]:
        """Processes kept besides the models (templates, Ray daemons); `fresh`
        reads their memory now instead of a recent reading (budget decisions)."""

    def start_cost(self, spec: DemoSpec) -> int | None:
        """Bytes starting `spec`'s model adds besides the model's own private
        memory: 0 when it forks from a running template, that template's size when
        it must start first, None for a fresh process (whose share of its
        libraries then counts too)."""

    def trim(self, keep: set[str] = frozenset()) -> int:
        """End idle shared processes (not those serving `keep` demos); returns
        bytes freed. Called when the budget needs room and on the idle sweep."""

    def sweep(self) -> None:
        """Periodic upkeep (the registry's sweeper calls it every second): end
        shared processes idle past their own TTL. Must be cheap at rest."""

    def close(self) -> None:
        """End everything this backend started."""


def make_backend(name: str, max_copies: int = 1, **options: Any) -> Backend:
    """The backend called `name` ("spawn", "template", "ray"); a local one runs
    up to `max_copies` worker processes of a busy model (Ray has its replicas)."""
    if name in ("spawn", "template"):
        inner: Backend
        if name == "spawn":
            from demohub.backends.local.spawn import SpawnBackend

            inner = SpawnBackend(**options)
        else:
            from demohub.backends.local.template import TemplateBackend

            inner = TemplateBackend(**options)
        if max_copies <= 1:
            return inner
        from demohub.backends.local.copies import CopiesBackend

        extra = None if options.get("threads") else policy.extra_copy_threads(usable_cores(), max_copies)
        return CopiesBackend(inner, max_copies, extra, retry_s=policy.COPY_RETRY_S)
    if name == "ray":
        from demohub.backends.ray import RayBackend

        return RayBackend(**options)
    raise ValueError(f"unknown backend {name!r}; choose spawn, template or ray")
