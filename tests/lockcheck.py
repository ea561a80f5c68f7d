"""A harness that fails a test when a blocking call runs while a coordinating
lock is held (issue 29: "no coordinating lock is held across I/O, a child wait,
a network call or a log write").

It instruments the calls, not the hold times (hold times flake on two busy
cores): the coordinating locks (the registry's, the copies', the template
backend's and a template handle's) are swapped for `Watched` locks that know
which thread holds them, and the blocking calls (waiting for a process,
starting one, socket sends and receives, select with a timeout, sleeping,
removing a folder, reading a file, emitting an event) check, on the calling
thread, that it holds none. Violations are recorded with the stack that made
them and the test fails at teardown, so the code under test runs unchanged.

With `ray=True` (tests/test_ray.py, in a driver process of its own) the Ray
backend's cache lock is watched too, and every call into Ray (`ray.get`,
`ray.init`, `ray.shutdown`, Serve's run, delete, start and handle lookups, a
handle's `remote` and a response's `result`) counts as blocking.

Not watched, by design: per-channel locks whose job is to keep one socket's
messages in order (a worker's `_sending` and `_turn`, a template's `_ctl`
around its control-socket exchange, each bounded by the caller's deadline),
`ForkedProcess._lock`, held only for a non-blocking waitpid and a signal, and
the Ray backend's `_apps_refresh`, which makes the threads that asked for a
fresh view of Serve wait for the one refresh in flight (bounded by its 10 s
deadline) instead of each asking the controller.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import threading
import time
import traceback
from pathlib import Path

_real_lock = threading.Lock
_local = threading.local()


def _held() -> list[str]:
    held = getattr(_local, "held", None)
    if held is None:
        held = _local.held = []
    return held


class Watched:
    """A lock that records, per thread, that it is held."""

    def __init__(self, name: str):
        self.name = name
        self._lock = _real_lock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = self._lock.acquire(blocking, timeout)
        if got:
            _held().append(self.name)
        return got

    def release(self) -> None:
        _held().remove(self.name)
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class Harness:
    def __init__(self) -> None:
        self.violations: list[str] = []
        self._guard = _real_lock()

    def check(self, what: str) -> None:
        held = list(getattr(_local, "held", ()) or ())
        if held:
            stack = "".join(traceback.format_stack(limit=12)[:-2])
            with self._guard:
                self.violations.append(f"{what} while holding {', '.join(held)}\n{stack}")

    def install(self, monkeypatch, ray: bool = False) -> None:
        """Swap the coordinating locks and wrap the blocking calls (undone by monkeypatch)."""
        from demohub import events
        from demohub.backends.local import copies, template
        from demohub.registry import Registry

        def watch(cls, *pairs):
            original = cls.__init__

            def init(obj, *args, **kwargs):
                original(obj, *args, **kwargs)
                for lock_attr, condition_attr in pairs:
                    lock = Watched(f"{cls.__name__}.{lock_attr}")
                    setattr(obj, lock_attr, lock)
                    if condition_attr:
                        setattr(obj, condition_attr, threading.Condition(lock))

            monkeypatch.setattr(cls, "__init__", init)

        watch(Registry, ("_lock", "_room"))
        watch(copies.Copies, ("_lock", "_free"))
        watch(template.TemplateBackend, ("_lock", None))
        watch(template.TemplateWorker, ("_lock", None))
        watch(template._Spawned, ("_lock", None))

        def wrap(owner, name: str, what: str, when=lambda *a, **k: True) -> None:
            original = getattr(owner, name)

            def checked(*args, **kwargs):
                if when(*args, **kwargs):
                    self.check(what)
                return original(*args, **kwargs)

            monkeypatch.setattr(owner, name, checked)

        wrap(subprocess.Popen, "wait", "a process wait (Popen.wait)")
        wrap(subprocess.Popen, "__init__", "a process start (Popen)")
        wrap(template.ForkedProcess, "wait", "a process wait (ForkedProcess.wait)")
        wrap(os, "waitpid", "a blocking waitpid", when=lambda pid, options: not options & os.WNOHANG)
        for name in ("send", "sendall", "sendmsg", "recv", "recv_into", "recvmsg"):
            wrap(socket.socket, name, f"a socket {name}")
        wrap(select, "select", "a select with a timeout",
             when=lambda *a, **k: (a[3] if len(a) > 3 else k.get("timeout")) != 0)
        wrap(time, "sleep", "a sleep", when=lambda seconds: seconds > 0)
        wrap(shutil, "rmtree", "a folder removal")
        wrap(Path, "read_text", "a file read")
        wrap(events, "event", "an event (a log write and subscriber calls)")
        if ray:
            self._install_ray(monkeypatch, watch, wrap)

    def _install_ray(self, monkeypatch, watch, wrap) -> None:
        import ray
        from ray import serve
        from ray.serve.handle import DeploymentHandle, DeploymentResponse

        from demohub.backends.ray import backend

        watch(backend.RayBackend, ("_lock", None))
        for name in ("get", "init", "shutdown"):
            wrap(ray, name, f"a Ray call (ray.{name})")
        for name in ("_run", "delete", "start", "get_app_handle"):
            wrap(serve, name, f"a Ray call (serve.{name})")
        wrap(DeploymentHandle, "remote", "a Ray call (DeploymentHandle.remote)")
        wrap(DeploymentResponse, "result", "a Ray call (DeploymentResponse.result)")
