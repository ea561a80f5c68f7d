"""The template backend: workers forked from a per-framework template process
(`--start-method template`).

For each framework family (torch, tensorflow, none) one template process
(`demohub.backends.local.template_main`) imports the framework and that family's runtimes,
with no model, no thread pool and no GPU context, and forks a worker per model
on demand. A cold load then costs the weights, not the framework import, and
the workers share the template's pages.

Who owns what:
- The hub (this backend) starts each template (`subprocess.Popen`, reaped by
  its Popen) and ends it: after `template_ttl_s` with no live worker, on
  `trim()` when the budget needs room, on `close()`.
- The template double-forks each worker, so the worker is re-parented to the
  hub, which marks itself a child subreaper: the hub waits for, kills and reaps
  a forked worker through `ForkedProcess` exactly as it does a spawned one
  (`LocalWorker`), and the worker exits if the hub dies (its parent changes).
  Ending a template never touches its workers, and killing a worker never
  touches its template.
- A family whose template cannot fork safely (more than one thread after its
  imports, a failed start, a failed fork) keeps the spawn path; the reason is
  logged as a `template_unsafe` / `template_failed` event with the evidence.
"""

from __future__ import annotations

import ast
import ctypes
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from demohub import events
from demohub.backends.local import wire
from demohub.backends import CallResult, LoadInfo, OneCopy, SharedProcess, Tick
from demohub.backends.local.spawn import (PIPELINE_DEPTH, STOPPED_GRACE_S, LocalWorker, SpawnBackend, is_stopped,
                                    with_threads, worker_env, worker_start)
from demohub.errors import WorkerFailed
from demohub.memory import rollup
from demohub.spec import DemoSpec

FAMILIES = ("torch", "tensorflow", "none")
_TORCH = ("torch", "torchvision", "torchaudio")
_TENSORFLOW = ("tensorflow", "keras", "tf_keras")
_PR_SET_CHILD_SUBREAPER = 36
#: how long a template may take to import its family before the hub gives up on it
TEMPLATE_START_S = 180.0
#: a template's memory is read again after this long, or after it forks (each read
#: of /proc costs ~4 ms of CPU for a framework process; the sweeper asks every second)
MEMORY_EVERY_S = 30.0


# -- which family a demo belongs to (read, never imported, in the hub) -----------------------


def framework_of(spec: DemoSpec) -> str:
    """"torch", "tensorflow", "none", or "mixed" (both: such a worker is spawned,
    since torch must be imported before TensorFlow in any process)."""
    if spec.framework != "auto":
        return spec.framework
    found = {_family_of_module(m) for m in scan_imports(spec.runtime, _root_of(spec))[0]} - {"none"}
    if found >= {"torch", "tensorflow"}:
        return "mixed"
    return next(iter(found), "none")


def preloads_of(spec: DemoSpec, family: str) -> list[str]:
    """Framework modules of `family` the demo's code imports inside functions
    (torchvision in cassava's model builder): the template imports them too, so
    a load does not pay for them."""
    if family not in ("torch", "tensorflow"):
        return []
    lazy = scan_imports(spec.runtime, _root_of(spec))[1]
    return sorted(m for m in lazy if _family_of_module(m) == family)


def _family_of_module(module: str) -> str:
    first = module.split(".")[0]
    if first in _TORCH or module.startswith("safetensors.torch"):
        return "torch"
    if first in _TENSORFLOW:
        return "tensorflow"
    return "none"


def _root_of(spec: DemoSpec) -> list[str]:
    return [str(spec.import_root)] if spec.import_root else []


def scan_imports(module: str, roots: list[str]) -> tuple[set[str], set[str]]:
    """(modules imported at import time, modules imported inside functions) by
    `module` and the modules of its own top-level package it imports at import
    time, found by reading their source: nothing is imported."""
    top = module.split(".")[0]
    seen: set[str] = set()
    eager: set[str] = set()
    lazy: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _source_of(name, roots)
        if path is None:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue  # the worker reports it properly when it imports the runtime
        at_import = {id(node) for node in _module_level(tree.body)}
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
                if node.module.split(".")[0] == top:
                    names += [f"{node.module}.{alias.name}" for alias in node.names]
            if id(node) in at_import:
                eager.update(names)
                todo.extend(n for n in names if n.split(".")[0] == top)
            else:
                lazy.update(names)
    return eager, lazy


def _module_level(body: list[ast.stmt]) -> Iterable[ast.stmt]:
    """Statements run at import (also inside top-level if/try/with), not those
    in functions: an import inside a function happens only if it is called."""
    for node in body:
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for field in ("body", "orelse", "finalbody", "handlers"):
            yield from _module_level(getattr(node, field, []) or [])


def _source_of(module: str, roots: list[str]) -> Path | None:
    """The .py file of `module` under `roots` (or sys.path), without importing it."""
    parts = module.split(".")
    for root in [*roots, *sys.path]:
        base = Path(root or ".").joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


# -- a worker the hub did not start but adopted ------------------------------------------------


def become_subreaper() -> bool:
    """Make orphaned descendants of this process its children (Linux), so the hub
    can wait for and reap the workers its templates fork."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class ForkedProcess:
    """A child adopted by this process (a worker forked by a template): what
    `LocalWorker` needs of a process, like `subprocess.Popen`. Only this object
    reaps it, so its pid cannot be reused while it is held."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None
        self._lock = threading.Lock()  # one waitpid at a time; held for non-blocking calls only

    def poll(self) -> int | None:
        with self._lock:
            return self._poll()

    def _poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -signal.SIGKILL  # not ours any more: treat as gone
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        pidfd = _pidfd(self.pid)
        try:
            while self.poll() is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0)
                step = 0.5 if remaining is None else min(0.5, remaining)
                if pidfd is not None:
                    select.select([pidfd], [], [], step)  # readable once it has exited
                else:
                    time.sleep(min(0.02, step))
        finally:
            if pidfd is not None:
                os.close(pidfd)
        return self.returncode  # type: ignore[return-value]

    def kill(self) -> None:
        with self._lock:
            if self._poll() is None:  # not reaped, so the pid is still this process
                os.kill(self.pid, signal.SIGKILL)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


# -- one template process ------------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    threads: list[str]
    imported: list[str]
    failed: dict[str, str]
    import_s: float
    #: its imports created a CUDA context, which does not survive fork
    cuda_context: bool = False
    #: the most it held while importing (its peak RSS)
    peak_bytes: int = 0


class TemplateUnusable(Exception):
    """This family cannot fork workers now; `permanent` keeps it on spawn for good."""

    def __init__(self, message: str, permanent: bool):
        super().__init__(message)
        self.permanent = permanent


class Template:
    """The hub's handle on one template process. `_ctl` serialises exchanges on
    the control socket (the hello, then one fork at a time, each a few ms)."""

    def __init__(self, family: str, runtimes: list[str], preloads: list[str], roots: list[str],
                 env: dict[str, str]):
        self.family = family
        self.runtimes = runtimes
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        cmd = [sys.executable, "-m", "demohub.backends.local.template_main", "--fd", str(theirs.fileno()),
               "--family", family]
        for module in preloads:
            cmd += ["--preload", module]
        for runtime in runtimes:
            cmd += ["--runtime", runtime]
        for root in roots:
            cmd += ["--import-root", root]
        try:
            self.proc = subprocess.Popen(cmd, pass_fds=(theirs.fileno(),), env=env,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._sock = ours
        self._ctl = threading.Lock()
        self.hello: Hello | None = None
        self.started = time.monotonic()
        self.workers: list[ForkedProcess] = []
        self.pending = 0  # loads between asking for this template and their fork
        self.idle_since: float | None = time.monotonic()
        self._memory: tuple[float, dict[str, int]] = (0.0, {})  # (measured at, bytes by metric)
        #: what starting this family's template again adds: the most it held while
        #: importing, or its PSS when last measured with no worker if more
        self.alone_bytes = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def live_workers(self) -> int:
        """Workers forked from it that still run (call with the backend's lock held).
        When one has ended, its pages shared with the template are the template's
        alone again: its PSS has grown, so the next `memory()` reads /proc again."""
        before = len(self.workers)
        self.workers = [w for w in self.workers if w.poll() is None]
        if len(self.workers) != before:
            self.forget_memory()
        return len(self.workers)

    def memory(self, metric: str, fresh: bool = False) -> int:
        at, values = self._memory
        now = time.monotonic()
        if fresh or metric not in values or now - at > MEMORY_EVERY_S:
            values = rollup(self.pid) if self.alive() else {}
            self._memory = (now, values)
            if values and self.hello is not None:  # imported: what starting it again adds is the
                # most it held while importing, or its PSS alone if more (never seen alone: its RSS)
                if not self.workers:
                    self.alone_bytes = max(values["pss"], self.hello.peak_bytes)
                elif not self.alone_bytes:
                    self.alone_bytes = max(values["rss"], self.hello.peak_bytes)
        return values.get(metric, 0)

    def forget_memory(self) -> None:
        """Its workers changed: the next `memory()` reads /proc again."""
        self._memory = (0.0, {})

    def _lock_until(self, deadline: float, tick: Tick | None) -> None:
        while not self._ctl.acquire(timeout=max(0.0, min(0.25, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                raise TemplateUnusable(f"the {self.family} template stayed busy", permanent=False)
            if tick:
                tick()

    def wait_hello(self, deadline: float, tick: Tick | None) -> Hello:
        """The template's report once its imports are done."""
        self._lock_until(deadline, tick)
        try:
            if self.hello is None:
                message = self._receive(deadline, tick, "import its framework")
                info = message.get("hello")
                if info is None:
                    raise TemplateUnusable(f"the {self.family} template said {message!r}", permanent=True)
                self.hello = Hello(info["threads"], info["imported"], info["failed"], info["import_s"],
                                   bool(info.get("cuda_context")), int(info.get("peak_bytes") or 0))
                events.event("template_ready", None, family=self.family, pid=self.pid,
                             seconds=info["import_s"], threads=info["threads"], failed=info["failed"],
                             released_mb=round(info.get("released_bytes", 0) / 2**20, 1))
            return self.hello
        finally:
            self._ctl.release()

    def fork(self, request: dict, worker_end: socket.socket, deadline: float) -> ForkedProcess:
        """Ask the template for a worker serving on `worker_end`; it is this process's child."""
        self._lock_until(deadline, None)
        try:
            try:  # another thread may have given up on this template and closed its socket
                self._sock.settimeout(max(0.001, deadline - time.monotonic()))
                socket.send_fds(self._sock, [json.dumps({"fork": request}).encode()], [worker_end.fileno()])
            except (OSError, socket.timeout) as exc:
                raise TemplateUnusable(f"the {self.family} template is gone ({exc})", permanent=False) from None
            reply = self._receive(deadline, None, "fork a worker")
        finally:
            self._ctl.release()
        if "forked" not in reply:
            error = reply.get("error", repr(reply))
            raise TemplateUnusable(f"the {self.family} template could not fork: {error}",
                                   permanent="threads" in error)
        return ForkedProcess(int(reply["forked"]))

    def _receive(self, deadline: float, tick: Tick | None, what: str) -> dict:
        """The template's next message. A template stopped (SIGSTOP) for
        STOPPED_GRACE_S is ended: waiting out the load deadline for it would hang
        every load of its family."""
        stopped_since: float | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TemplateUnusable(f"the {self.family} template did not {what} in time", permanent=False)
            try:
                readable, _, _ = select.select([self._sock], [], [], min(0.25, remaining))
            except (OSError, ValueError) as exc:  # closed by a thread that gave up on it
                raise TemplateUnusable(f"the {self.family} template is gone ({exc})", permanent=False) from None
            if readable:
                break
            if tick:
                tick()
            if not is_stopped(self.pid):
                stopped_since = None
            elif stopped_since is None:
                stopped_since = time.monotonic()
            elif time.monotonic() - stopped_since > STOPPED_GRACE_S:
                self.proc.kill()
                self.proc.wait(timeout=5)
                raise TemplateUnusable(f"the {self.family} template was paused (SIGSTOP) for over "
                                       f"{STOPPED_GRACE_S:.0f} s and was ended", permanent=False)
        try:
            data = self._sock.recv(65536)
        except OSError as exc:
            data, why = b"", str(exc)
        else:
            why = f"exit code {self.proc.poll()}"
        if not data:
            raise TemplateUnusable(f"the {self.family} template ended before it could {what} ({why})",
                                   permanent=False)
        return json.loads(data)

    def stop(self, grace: float = 2.0) -> None:
        """Close its control socket (it exits on that), then kill after `grace`."""
        self._sock.close()
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


# -- a worker forked from a template ----------------------------------------------------------


class TemplateWorker(OneCopy):
    """A model handle that becomes a `LocalWorker` once its process exists: forked
    from its family's template, or spawned when the family cannot fork. The fork
    (and a template start) happens in `wait_ready`, where the load's deadline and
    progress ticks apply."""

    def __init__(self, backend: "TemplateBackend", spec: DemoSpec, model_dir: Path, placeholder: bool,
                 env: dict[str, str], threads: int | None = None):
        self.spec = spec
        self.threads = threads  # CPU threads it starts with, forked or (if its family cannot fork) spawned
        self._backend = backend
        self._model_dir = model_dir
        self._placeholder = placeholder
        self._env = env
        self._inner: LocalWorker | None = None
        self._ended: str | None = None
        self._lock = threading.Lock()  # guards _inner / _ended against a kill during the start
        self.origin = "starting"

    @property
    def pid(self) -> int | None:
        return self._inner.pid if self._inner else None

    @property
    def copies(self) -> int:
        return self._inner.copies if self._inner else 0

    @property
    def where(self) -> str:
        if self._inner is None:
            return "starting"
        return f"pid {self._inner.pid}, {self.origin}"

    def wait_ready(self, timeout: float, tick: Tick | None = None) -> LoadInfo:
        deadline = time.monotonic() + timeout
        inner = self._backend._start_worker(self, deadline, tick)
        with self._lock:
            self._inner = inner
            ended = self._ended
        if ended is not None:
            inner.kill(ended)
            raise WorkerFailed(f"the {self.spec.name} model's load was cancelled ({ended})")
        return inner.wait_ready(max(0.001, deadline - time.monotonic()), tick)

    def call(self, request: Any, timeout: float, threads: int | None = None) -> CallResult:
        if self._inner is None:
            raise WorkerFailed(f"the {self.spec.name} model's worker never started")
        return self._inner.call(request, timeout, threads)

    def alive(self) -> bool:
        if self._inner is None:
            return self._ended is None
        return self._inner.alive()

    def ended_by_hub(self) -> str | None:
        if self._inner is not None:
            return self._inner.ended_by_hub()
        return self._ended

    def memory(self, metric: str) -> int:
        return self._inner.memory(metric) if self._inner else 0

    def stop(self, grace: float = 2.0) -> None:
        with self._lock:
            inner = self._inner
            if inner is None and self._ended is None:
                self._ended = "stopped"
        if inner is not None:
            inner.stop(grace)

    def kill(self, reason: str = "killed") -> None:
        with self._lock:
            inner = self._inner
            if inner is None and self._ended is None:
                self._ended = reason
        if inner is not None:
            inner.kill(reason)


# -- the backend -----------------------------------------------------------------------------


class TemplateBackend:
    """Forks each model's worker from its framework family's template."""

    name = "template"

    def __init__(self, specs: Iterable[DemoSpec] = (), threads: int | None = None,
                 wait_policy: str | None = None, template_ttl_s: float | None = 900.0,
                 prewarm: bool = False, sizes_file: Path | None = None):
        self._spawn = SpawnBackend(threads=threads, wait_policy=wait_policy)
        self._env = worker_env(threads, wait_policy)
        # numpy's OpenBLAS starts a thread pool at import; a template must stay single-threaded
        self._template_env = {**self._env, "OPENBLAS_NUM_THREADS": "1"}
        self.template_ttl_s = template_ttl_s
        self._specs: dict[str, DemoSpec] = {}
        self._families: dict[str, str] = {}
        self._templates: dict[str, Template] = {}
        #: each family's template size when it last ran alone (Template.alone_bytes), kept
        #: in `sizes_file` so a restarted hub plans its first template start from it
        self._sizes_file = sizes_file
        self._alone: dict[str, int] = _read_sizes(sizes_file)
        #: families that keep the spawn path, with the evidence
        self.unsafe: dict[str, str] = {}
        self._lock = threading.Lock()  # guards the dicts above; never held across a wait
        self._closed = False
        self._adopting = become_subreaper()
        if not self._adopting:
            for family in FAMILIES:
                self.unsafe[family] = "this system cannot re-parent forked workers to the hub (no subreaper)"
        for spec in specs:
            self._know(spec)
        if prewarm:
            for family in sorted({f for f in self._families.values() if f in FAMILIES}):
                self._template(family, pending=0)

    # -- Backend ----------------------------------------------------------------------------

    def start(self, spec: DemoSpec, model_dir: Path, *, placeholder: bool,
              threads: int | None = None) -> TemplateWorker:
        family = self._know(spec)
        env = _device_env(with_threads(self._env, threads), spec)
        if family not in FAMILIES or family in self.unsafe:
            return _Spawned(self._spawn.start(spec, model_dir, placeholder=placeholder, threads=threads), family)
        return TemplateWorker(self, spec, model_dir, placeholder, env, threads)

    def concurrency(self, spec: DemoSpec) -> int:
        return PIPELINE_DEPTH

    def shared(self, metric: str, fresh: bool = False) -> list[SharedProcess]:
        with self._lock:
            templates = list(self._templates.values())
            idle = {t.family: t.pending == 0 and t.live_workers() == 0 for t in templates}
        found = [SharedProcess(name=f"template {t.family}", pid=t.pid, memory_bytes=t.memory(metric, fresh),
                               idle=idle[t.family])
                 for t in templates if t.alive()]
        self._remember_alone(templates)
        return found

    def _remember_alone(self, templates: list[Template]) -> None:
        """Note the templates' sizes alone; the file is written (outside the lock) only when one changed."""
        with self._lock:
            changed = False
            for t in templates:
                if t.alone_bytes and abs(self._alone.get(t.family, 0) - t.alone_bytes) > 2**20:
                    self._alone[t.family] = t.alone_bytes
                    changed = True
            sizes = dict(self._alone)
        if changed and self._sizes_file is not None:
            _write_sizes(self._sizes_file, sizes)

    def start_cost(self, spec: DemoSpec) -> int | None:
        """A family whose template runs costs nothing to start; one whose template
        must start costs that template's size when it last ran alone (a family
        never started yet: the largest template seen), and one still importing
        costs what it has yet to grow by; a spawned family: None."""
        family = self._know(spec)
        if family not in FAMILIES or family in self.unsafe:
            return None
        with self._lock:
            t = self._templates.get(family)
            alone = self._alone.get(family) or max(self._alone.values(), default=0)
        if t is None or not t.alive():
            return alone
        if t.hello is None:  # importing: part of it is measured already, the rest is to come
            return max(0, alone - t.memory("pss", fresh=True))
        return 0

    def trim(self, keep: set[str] = frozenset()) -> int:
        """End idle templates whose family none of the `keep` demos needs."""
        needed = {self._families.get(name) for name in keep}
        with self._lock:
            victims = [t for family, t in self._templates.items()
                       if family not in needed and t.pending == 0 and t.live_workers() == 0]
            for t in victims:
                del self._templates[t.family]
        freed = 0
        for t in victims:
            freed += t.memory("pss", fresh=True)
            t.stop()
            events.event("template_end", None, family=t.family, reason="memory", pid=t.pid)
        return freed

    def sweep(self) -> None:
        """End templates that have had no worker for `template_ttl_s`, and forget dead ones."""
        now = time.monotonic()
        ended: list[tuple[Template, str]] = []
        with self._lock:
            for family, t in list(self._templates.items()):
                if not t.alive():
                    del self._templates[family]
                    ended.append((t, f"exited with code {t.proc.poll()}"))
                    continue
                if t.pending or t.live_workers():
                    t.idle_since = None
                    continue
                if t.idle_since is None:
                    t.idle_since = now
                elif self.template_ttl_s is not None and now - t.idle_since > self.template_ttl_s:
                    del self._templates[family]
                    ended.append((t, "idle"))
        for t, reason in ended:
            t.stop()
            events.event("template_end", None, family=t.family, reason=reason, pid=t.pid)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            templates = list(self._templates.values())
            self._templates.clear()
        for t in templates:
            t.stop(grace=1.0)

    # -- helpers ------------------------------------------------------------------------------

    def family(self, spec: DemoSpec) -> str:
        return self._know(spec)

    def _know(self, spec: DemoSpec) -> str:
        with self._lock:
            family = self._families.get(spec.name)
        if family is None:
            family = framework_of(spec)
            with self._lock:
                self._families[spec.name] = family
                self._specs[spec.name] = spec
        return family

    def _template(self, family: str, pending: int = 1) -> Template:
        """The family's live template, started if needed, with `pending` more loads
        counted on it (so `trim` and the TTL leave it alone). Reading the runtimes'
        sources and starting the process happen outside `_lock`; if two loads race to
        start one, the second's is stopped and the first's is used."""
        with self._lock:
            t = self._templates.get(family)
            if t is not None and t.alive():
                t.pending += pending
                return t
            specs = sorted((s for n, s in self._specs.items() if self._families[n] == family), key=lambda s: s.name)
        roots = sorted({str(s.import_root) for s in specs if s.import_root})
        preloads = sorted({m for s in specs for m in preloads_of(s, family)})
        fresh = Template(family, [s.runtime for s in specs], preloads, roots, self._template_env)
        with self._lock:
            closed = self._closed
            t = self._templates.get(family)
            lost = closed or (t is not None and t.alive())
            if not lost:
                t = self._templates[family] = fresh
            if not closed:
                t.pending += pending
        if lost:
            fresh.stop(grace=1.0)
            if closed:
                raise WorkerFailed(f"the {family} template was not started: the hub is shutting down")
        else:
            events.event("template_start", None, family=family, pid=t.pid, runtimes=t.runtimes, preloads=preloads)
        return t

    def _start_worker(self, handle: TemplateWorker, deadline: float, tick: Tick | None) -> LocalWorker:
        """Fork `handle`'s worker from its template; spawn it if the family cannot fork."""
        spec = handle.spec
        family = self._families[spec.name]
        with self._lock:
            closed = self._closed
        if closed:
            raise WorkerFailed(f"the {spec.name} model was not started: the hub is shutting down")
        t = self._template(family)
        proc = None
        try:
            hello = t.wait_hello(min(deadline, t.started + TEMPLATE_START_S), tick)
            with self._lock:
                alone = not t.workers
            if alone:  # before its first fork: the one moment its PSS is its own
                t.memory("pss", fresh=True)
                self._remember_alone([t])
            if hello.cuda_context:
                raise TemplateUnusable(f"importing {', '.join(hello.imported) or 'nothing'} created a CUDA "
                                       f"context in the {family} template; a forked worker could not use it",
                                       permanent=True)
            if len(hello.threads) != 1:
                raise TemplateUnusable(
                    f"after importing {', '.join(hello.imported) or 'nothing'} the {family} template has "
                    f"{len(hello.threads)} threads ({', '.join(hello.threads)}); forking could deadlock",
                    permanent=True)
            with worker_start(spec.name) as (parent_end, child_end, temp):
                env = {k: v for k, v in handle._env.items() if self._env.get(k) != v}
                request = {"name": spec.name, "runtime": spec.runtime, "model_dir": str(handle._model_dir),
                           "placeholder": handle._placeholder, "hub_pid": os.getpid(),
                           "env": {**env, "TMPDIR": str(temp)}}
                proc = t.fork(request, child_end, deadline)
        except TemplateUnusable as exc:
            self._drop_template(t, family, str(exc), exc.permanent)
            handle.origin = "spawned"
            return self._spawn.start(spec, handle._model_dir, placeholder=handle._placeholder,
                                     threads=handle.threads)
        finally:
            with self._lock:
                t.pending -= 1
                t.idle_since = None
                if proc is not None:
                    t.workers.append(proc)
                    t.forget_memory()
        handle.origin = f"forked from template {family} (pid {t.pid})"
        return LocalWorker(spec, proc, wire.Channel(parent_end), temp)

    def _drop_template(self, t: Template, family: str, why: str, permanent: bool) -> None:
        with self._lock:
            if permanent:
                self.unsafe[family] = why
            if self._templates.get(family) is t and (permanent or not t.alive()):
                del self._templates[family]
                stop = True
            else:
                stop = False
        events.event("template_unsafe" if permanent else "template_failed", None, family=family,
                     error=why, fallback="spawn")
        if stop:
            t.stop()


class _Spawned(TemplateWorker):
    """A worker of a family that keeps the spawn path, behind the same handle."""

    def __init__(self, inner: LocalWorker, family: str):
        self.spec = inner.spec
        self._inner = inner
        self._ended = None
        self._lock = threading.Lock()
        self.origin = f"spawned ({family} family)"

    def wait_ready(self, timeout: float, tick: Tick | None = None) -> LoadInfo:
        return self._inner.wait_ready(timeout, tick)

    def stop(self, grace: float = 2.0) -> None:
        self._inner.stop(grace)

    def kill(self, reason: str = "killed") -> None:
        self._inner.kill(reason)


def _read_sizes(path: Path | None) -> dict[str, int]:
    try:
        raw = json.loads(path.read_text()) if path else {}
        return {str(k): int(v) for k, v in raw.items() if k in FAMILIES}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}  # only ever a planning estimate: unreadable counts as none


def _write_sizes(path: Path, sizes: dict[str, int]) -> None:
    """Whole-file write (temporary name, then rename); a failure costs only the estimate."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, scratch = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as out:
            json.dump(sizes, out, sort_keys=True)
        os.replace(scratch, path)
    except OSError:
        pass


def _device_env(env: dict[str, str], spec: DemoSpec) -> dict[str, str]:
    """The worker's environment with its device (as the spawn backend sets it)."""
    try:
        from demohub import device
    except ImportError:  # pragma: no cover - older trees without per-demo devices
        return dict(env)
    return device.worker_env(env, spec.name, spec.device)
