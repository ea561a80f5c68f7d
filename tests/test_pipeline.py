"""A local worker holds one call running and the next one staged in its socket,
so it starts that call the moment the first ends; what the staged call sees
when the one ahead of it crashes, hangs, is paused or returns something the hub
refuses. Both start methods, real worker processes."""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import termios
import threading
import time

import pytest

from demohub.backends.local.spawn import PIPELINE_DEPTH, STOPPED_GRACE_S, LocalWorker
from demohub.errors import ModelError, WorkerFailed, WorkerTimeout
from demohub.registry import Limits, Registry, State
from support import gone
from registries import make_registry, state

#: every test here fails if a blocking call ran under a coordinating lock (tests/lockcheck.py)
pytestmark = pytest.mark.usefixtures("no_blocking_under_locks")


@pytest.fixture(params=["spawn", "template"])
def build(tmp_path, request):
    """build(**spec_changes) -> a registry whose alpha model is loaded and warm."""
    registries = []

    def _build(**spec_changes) -> Registry:
        registry = make_registry(tmp_path, request.param, Limits(), alpha={}, **spec_changes)
        registries.append(registry)
        registry.predict("alpha", {"value": 0})
        return registry

    yield _build
    for registry in registries:
        registry.close()


class Call:
    """One registry.predict on its own thread: its result or error, and when it ended."""

    def __init__(self, registry: Registry, request: dict):
        self.result = self.error = None
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._run, args=(registry, request))
        self._thread.start()

    def _run(self, registry: Registry, request: dict) -> None:
        start = time.monotonic()
        try:
            self.result = registry.predict("alpha", request)
        except Exception as exc:  # noqa: BLE001 - the test reads it
            self.error = exc
        self.seconds = time.monotonic() - start

    def join(self, timeout: float = 30.0) -> Call:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "a call hung"
        return self


def worker_of(registry: Registry) -> LocalWorker:
    worker = registry._slots["alpha"].handle
    return getattr(worker, "_inner", worker)  # a template's handle wraps the forked process's


def unread_bytes(worker: LocalWorker) -> int:
    """Bytes the hub sent the worker process that it has not read yet."""
    return struct.unpack("i", fcntl.ioctl(worker._channel.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


def test_the_next_call_waits_in_the_workers_socket_not_in_the_hub(build):
    registry = build()
    assert registry.concurrency("alpha") == PIPELINE_DEPTH == 2
    worker = worker_of(registry)
    assert unread_bytes(worker) == 0
    running = Call(registry, {"op": "sleep", "seconds": 1.5, "value": "first"})
    time.sleep(0.4)  # inside the worker: nothing the hub can observe says so sooner
    staged = Call(registry, {"value": "second"})
    deadline = time.monotonic() + 1.0  # well inside the first call's 1.5 s
    while unread_bytes(worker) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert unread_bytes(worker) > 0, "the second request was not sent while the first ran"
    assert state(registry, "alpha").in_flight == 2
    running.join(), staged.join()
    assert (running.result["echo"], staged.result["echo"]) == ("first", "second")
    assert running.result["pid"] == staged.result["pid"] == worker.pid
    assert unread_bytes(worker) == 0


def test_each_caller_gets_its_own_reply(build):
    registry = build()
    calls = [Call(registry, {"value": f"{n}", "op": "sleep", "seconds": 0.01 * (n % 3)}) for n in range(24)]
    for call in calls:
        call.join()
    assert [c.error for c in calls] == [None] * 24
    assert [c.result["echo"] for c in calls] == [f"{n}" for n in range(24)]
    assert state(registry, "alpha").stats.predictions == 25


def replaced(registry: Registry, old_pid: int) -> None:
    """The model answers again from a new process, and the old one is gone."""
    answer = registry.predict("alpha", {"value": "again"})
    assert answer["echo"] == "again" and answer["pid"] != old_pid
    deadline = time.monotonic() + 5
    while not gone(old_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(old_pid), "the failed worker's process was left behind"


def ahead_and_behind(registry: Registry, ahead: dict, gap: float = 0.3,
                     meanwhile=lambda pid: None) -> tuple[int, Call, Call]:
    """Send `ahead`; once it runs, stage a plain echo behind it; then `meanwhile(pid)`.
    Returns the worker's PID and both calls, ended."""
    pid = worker_of(registry).pid
    running = Call(registry, ahead)
    time.sleep(gap)
    staged = Call(registry, {"value": "behind"})
    meanwhile(pid)
    return pid, running.join(STOPPED_GRACE_S + 20), staged.join(STOPPED_GRACE_S + 20)


def ran_again(staged: Call, old_pid: int) -> None:
    """The staged request never reached the failed worker: it ran on the restarted one."""
    assert staged.error is None, staged.error
    assert staged.result["echo"] == "behind" and staged.result["pid"] != old_pid


def test_a_crash_ahead_sends_the_staged_call_to_the_restarted_worker(build):
    registry = build()
    pid, running, staged = ahead_and_behind(registry, {"op": "sleep", "seconds": 1.0, "then": "crash"})
    assert isinstance(running.error, WorkerFailed) and "killed by signal 9" in str(running.error)
    ran_again(staged, pid)
    assert staged.seconds < 15, "the staged call waited out its own deadline"
    assert state(registry, "alpha").stats.crashes == 1  # one death, however many calls saw it
    replaced(registry, pid)


def test_a_timeout_ahead_ends_the_worker_and_the_staged_call_runs_again(build):
    registry = build(predict_timeout_s=1.0)
    pid, running, staged = ahead_and_behind(registry, {"op": "sleep", "seconds": 20.0}, gap=0.2)
    assert isinstance(running.error, WorkerTimeout) and "did not finish" in str(running.error)
    ran_again(staged, pid)
    alpha = state(registry, "alpha")
    assert alpha.stats.timeouts == 1 and alpha.stats.crashes == 0
    replaced(registry, pid)


def test_a_refused_reply_ahead_leaves_the_staged_call_its_own(build):
    registry = build()
    pid, running, staged = ahead_and_behind(registry, {"op": "sleep", "seconds": 1.0, "then": "torch"})
    assert isinstance(running.error, ModelError) and "cannot use" in str(running.error)
    assert staged.error is None and staged.result["echo"] == "behind" and staged.result["pid"] == pid
    assert state(registry, "alpha").state == State.READY


def test_a_paused_worker_fails_the_running_call_within_the_grace_and_the_staged_one_runs_again(build):
    registry = build()
    pid, running, staged = ahead_and_behind(registry, {"op": "sleep", "seconds": 1.0},
                                            meanwhile=lambda pid: os.kill(pid, signal.SIGSTOP))
    assert isinstance(running.error, WorkerTimeout) and "SIGSTOP" in str(running.error)
    assert running.seconds < STOPPED_GRACE_S + 5
    ran_again(staged, pid)
    replaced(registry, pid)
