"""The spawn backend: each model in a fresh `python -m demohub.backends.local.worker` process.

`LocalWorker` is the hub's handle on any local worker process that speaks
`demohub.backends.local.wire` over a socket; the template backend reuses it for the workers
it forks.
"""

from __future__ import annotations

import os
import pickle
import shutil
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Protocol

from demohub import PROJECT_ROOT, device, tempdir
from demohub.backends.local import wire
from demohub.backends import CallResult, LoadInfo, OneCopy, SharedProcess, Tick
from demohub.errors import InputError, ModelBusy, ModelError, NotStarted, WorkerFailed, WorkerTimeout
from demohub.memory import worker_usage
from demohub.spec import DemoSpec

#: a worker's memory is read again after this long even if it did nothing...
MEMORY_MAX_AGE_S = 60.0
#: ...and at most this often while it answers calls
MEMORY_BUSY_S = 5.0


class LocalProcess(Protocol):
    """What LocalWorker needs of a process: `subprocess.Popen` has it."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def kill(self) -> None: ...


#: How a worker's idle OpenMP threads wait: a short spin, then sleep. libgomp's
#: default spins ~30x longer, and in a worker alone with its team on 2 busy cores
#: a spinning thread burns the slice its partner needs (cassava's warm request
#: took 13x the one-process app's time on a loaded machine). Sleeping at once
#: (PASSIVE) cures that but pays a futex wake-up at every one of a forward
#: pass's hundreds of parallel regions: on an AMD EPYC KVM guest a lone cassava
#: call took 1.2-1.4x as long as with a short spin. 10,000 spins bridge the
#: gaps inside a forward pass and still sleep soon after a call ends
#: (docs/benchmarks.md, "a second machine, worker heaps and a short spin"). OMP_WAIT_POLICY
#: or GOMP_SPINCOUNT in the hub's own environment still win.
DEFAULT_SPIN_COUNT = "10000"


def worker_env(threads: int | None = None, wait_policy: str | None = None) -> dict[str, str]:
    """The environment a worker starts with: our code importable, the framework
    thread pools sized and their idle threads told to sleep soon, before any
    framework is imported."""
    env = with_threads(dict(os.environ), threads)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    if wait_policy:
        env["OMP_WAIT_POLICY"] = wait_policy
    elif "OMP_WAIT_POLICY" not in env:
        env.setdefault("GOMP_SPINCOUNT", DEFAULT_SPIN_COUNT)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def with_threads(env: dict[str, str], threads: int | None) -> dict[str, str]:
    """`env` with the framework thread pools sized to `threads` (None: as is).
    torch can change its pool per call; TensorFlow only reads this at start."""
    if threads:
        env = {**env, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": "1"}
    return env


#: How long a worker may stay stopped (SIGSTOP, a debugger) before the hub gives up on it.
STOPPED_GRACE_S = 5.0


class _Stopped(Exception):
    pass


def is_stopped(pid: int) -> bool:
    """Whether the process is stopped by a signal or traced (state T or t)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] in (b"T", b"t")


#: Calls one local worker process is handed at once: it runs one, and the next
#: waits already sent, in its socket, so the process starts it the moment the
#: first ends instead of after a round trip through the busy hub process.
PIPELINE_DEPTH = 2


class LocalWorker(OneCopy):
    """One model in one local process.

    Up to PIPELINE_DEPTH calls are in the process at once (`_room`); the process
    answers them in the order they were sent, so each caller takes a ticket when
    it sends (under `_sending`, held for one send) and reads its reply when the
    replies before it have been read (`_turn`). A call that cannot read its
    reply (the process died, hung or was stopped) breaks the channel for the
    calls behind it too: they fail at once rather than at their deadlines. Every
    wait is bounded by the caller's own deadline; all three are owned by this
    handle and live as long as it does.
    """

    def __init__(self, spec: DemoSpec, proc: LocalProcess, channel: wire.Channel, temp: Path | None = None):
        self.spec = spec
        self._proc = proc
        self._channel = channel
        self._temp = temp  # the process's TMPDIR: this handle removes it once the process has ended
        self._room = threading.BoundedSemaphore(PIPELINE_DEPTH)
        self._sending = threading.Lock()
        self._turn = threading.Condition()
        self._sent = 0  # tickets handed out (under _sending)
        self._read = 0  # replies read (under _turn)
        self._broken: str | None = None  # why the channel can no longer be used (under _turn)
        self._ended: str | None = None
        self._measured: tuple[float, int, dict[str, int]] | None = None  # (at, replies read then, by metric)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def where(self) -> str:
        return f"pid {self._proc.pid}"

    @property
    def copies(self) -> int:
        return 1 if self.alive() else 0

    def alive(self) -> bool:
        return self._proc.poll() is None

    def ended_by_hub(self) -> str | None:
        return self._ended

    def memory(self, metric: str) -> int:
        """Measured again when it has answered calls since the last reading (at
        most every MEMORY_BUSY_S, but at once after its first calls, which grow its
        heap) or the reading is MEMORY_MAX_AGE_S old: the sweeper asks every
        second, and each /proc read costs ~4 ms of CPU for a framework process.
        One read gives every metric, so asking for PSS and USS costs one."""
        if not self.alive():
            return 0
        now = time.monotonic()
        last = self._measured
        if last is not None:
            at, calls, values = last
            answered = self._read  # memory changes only when the model works
            fresh_enough = MEMORY_MAX_AGE_S if calls == answered else MEMORY_BUSY_S
            if now - at < fresh_enough and (calls or not answered) and metric in values:
                return values[metric]
        calls = self._read
        values = worker_usage(self.pid)
        self._measured = (now, calls, values)
        return values.get(metric, 0)

    # -- talking to it -------------------------------------------------------------

    def wait_ready(self, timeout: float, tick: Tick | None = None) -> LoadInfo:
        deadline = time.monotonic() + timeout
        reply = self._exchange(None, deadline, f"loading within {timeout:.0f} s", tick)
        if reply[0] == wire.READY:
            return LoadInfo(seconds=reply[1]["load_s"])
        self.kill("load failed")
        name = self.spec.name
        raise ModelError(f"The {name} model could not be loaded; the operator can see why on the "
                         "Status tab and in the server log.",
                         detail=f"{reply[1]}\n{reply[2] if len(reply) > 2 else ''}".strip())

    def call(self, request: Any, timeout: float, threads: int | None = None) -> CallResult:
        deadline = time.monotonic() + timeout
        if not self._room.acquire(timeout=timeout):
            raise ModelBusy(f"The {self.spec.name} model stayed busy with other requests for "
                            f"{timeout:.0f} s; try again in a moment.")
        try:
            reply = self._pipelined((wire.PREDICT, request, {"threads": threads}), deadline, timeout)
        finally:
            self._room.release()
        kind = reply[0]
        if kind == wire.OK:
            return CallResult(value=reply[1], seconds=reply[2])
        if kind == wire.INPUT_ERROR:
            raise InputError(reply[1])
        raise ModelError(f"The {self.spec.name} model failed on this request; the error is logged "
                         "for the operator. Try another input or try again.",
                         detail=f"{reply[1]}\n{reply[2]}".strip())

    def _pipelined(self, message: tuple, deadline: float, timeout: float) -> tuple:
        """Send `message` behind the calls already in the process, then read its reply in turn."""
        what = f"a prediction within {timeout:.0f} s"
        if not self._sending.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise ModelBusy(f"The {self.spec.name} model stayed busy with other requests for "
                            f"{timeout:.0f} s; try again in a moment.")
        try:
            self._check_broken()
            ticket = self._sent
            self._sent += 1
            self._exchange(message, deadline, what, None, receive=False)
        except BaseException:
            self._break("a request could not be sent to it")
            raise
        finally:
            self._sending.release()
        with self._turn:
            while self._read != ticket and self._broken is None:
                if not self._turn.wait(max(0.0, deadline - time.monotonic())) and self._read != ticket:
                    break
        if self._read != ticket:
            self._check_broken()
            self._break("a request ahead of this one did not finish in time")
            self.kill("timeout")
            raise WorkerTimeout(f"the {self.spec.name} model did not finish {what}; its worker was stopped "
                                "and will restart on the next request")
        try:
            reply = self._exchange(None, deadline, what, None)
        except ModelError:  # read whole and refused (unpickling): the next reply is still the next caller's
            self._next_turn()
            raise
        except BaseException:
            self._break("a request ahead of this one failed")
            raise
        self._next_turn()
        return reply

    def _next_turn(self) -> None:
        with self._turn:
            self._read += 1
            self._turn.notify_all()

    def _check_broken(self) -> None:
        with self._turn:
            broken = self._broken
        if broken is not None:
            raise NotStarted(f"the {self.spec.name} model's worker {self._describe_death()} before it "
                             f"reached this request ({broken}); it will restart on the next request")

    def _break(self, why: str) -> None:
        """No reply after this point can be matched to its request: wake every waiting caller."""
        with self._turn:
            if self._broken is None:
                self._broken = why
            self._turn.notify_all()

    def _exchange(self, message: tuple | None, deadline: float, what: str, tick: Tick | None,
                  receive: bool = True) -> tuple:
        """Send `message` (if any) and receive the reply (if `receive`), all before
        `deadline`; a process stopped (SIGSTOP) for STOPPED_GRACE_S is given up on sooner."""
        name = self.spec.name
        try:
            if message is not None:
                self._channel.send(message, deadline)
            if not receive:
                return ()
            self._channel.wait_readable(deadline, self._watch(tick))
            return self._channel.recv(deadline)
        except _Stopped:
            self.kill("paused")
            raise WorkerTimeout(f"the {name} model's worker was paused (SIGSTOP) for over "
                                f"{STOPPED_GRACE_S:.0f} s; it was ended and will restart on the next "
                                "request") from None
        except wire.ChannelTimeout:
            self.kill("timeout")
            raise WorkerTimeout(f"the {name} model did not finish {what}; its worker was stopped and "
                                "will restart on the next request") from None
        except pickle.UnpicklingError as exc:
            raise ModelError(f"The {name} model returned a result the hub cannot use; the error is "
                             "logged for the operator.", detail=str(exc)) from None
        except (EOFError, OSError):
            self._reap(5.0)
            raise WorkerFailed(f"the {name} model's worker {self._describe_death()}; it will restart "
                               "on the next request") from None

    def _watch(self, tick: Tick | None) -> Tick:
        """`tick`, plus a check that the process is not stopped: a stopped worker
        never answers, and waiting out a 300 s load deadline for it hangs every
        request queued behind the load."""
        stopped_since: list[float] = []

        def check() -> None:
            if tick:
                tick()
            if not is_stopped(self.pid):
                stopped_since.clear()
            elif not stopped_since:
                stopped_since.append(time.monotonic())
            elif time.monotonic() - stopped_since[0] > STOPPED_GRACE_S:
                raise _Stopped

        return check

    def _describe_death(self) -> str:
        code = self._proc.poll()
        if code is None:
            return "stopped answering"
        if code < 0:
            return f"was killed by signal {-code}"
        return f"exited with code {code}"

    # -- ending it -------------------------------------------------------------------

    def stop(self, grace: float = 2.0) -> None:
        """Ask politely, then kill; always reap so no zombie is left."""
        if self._ended is None:
            self._ended = "stopped"
        if self.alive() and self._sending.acquire(timeout=min(grace, 1.0)):
            try:
                self._channel.send((wire.STOP, None), time.monotonic() + min(grace, 1.0))
            except (OSError, wire.ChannelTimeout):
                pass
            finally:
                self._sending.release()
            self._reap(grace)
        self.kill(self._ended)

    def kill(self, reason: str = "killed") -> None:
        if self._ended is None:
            self._ended = reason
        self._break(f"the hub ended it: {reason}")
        if self.alive():
            try:
                self._proc.kill()
            except ProcessLookupError:
                pass
        self._reap(5.0)
        self._channel.close()
        if self._temp is not None and not self.alive():
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None

    def _reap(self, timeout: float) -> None:
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass


@contextmanager
def worker_start(name: str) -> Iterator[tuple[socket.socket, socket.socket, Path]]:
    """(the hub's end, the worker's end, the worker's TMPDIR) for a worker about to
    be started (spawned or forked): the worker's end is closed here once the worker
    holds it; if the start fails, the hub's end and the folder go too."""
    parent, child = socket.socketpair()
    temp = tempdir.worker_folder(name)
    try:
        yield parent, child, temp
    except BaseException:
        parent.close()
        shutil.rmtree(temp, ignore_errors=True)
        raise
    finally:
        child.close()


class SpawnBackend:
    """A fresh interpreter per model: nothing shared, so eviction returns everything."""

    name = "spawn"

    def __init__(self, threads: int | None = None, wait_policy: str | None = None):
        self._env = worker_env(threads, wait_policy)

    def start(self, spec: DemoSpec, model_dir: Path, *, placeholder: bool,
              threads: int | None = None) -> LocalWorker:
        with worker_start(spec.name) as (parent_sock, child_sock, temp):
            cmd = [sys.executable, "-m", "demohub.backends.local.worker", "--fd", str(child_sock.fileno()),
                   "--runtime", spec.runtime, "--model-dir", str(model_dir)]
            if placeholder:
                cmd.append("--placeholder")
            if spec.import_root:
                cmd += ["--import-root", str(spec.import_root)]
            env = device.worker_env(with_threads(self._env, threads), spec.name, spec.device)
            proc = subprocess.Popen(cmd, pass_fds=(child_sock.fileno(),), env={**env, "TMPDIR": str(temp)},
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        return LocalWorker(spec, proc, wire.Channel(parent_sock), temp)

    def concurrency(self, spec: DemoSpec) -> int:
        return PIPELINE_DEPTH

    def shared(self, metric: str, fresh: bool = False) -> list[SharedProcess]:
        return []

    def start_cost(self, spec: DemoSpec) -> int | None:
        return None  # a fresh interpreter: its libraries' pages are its own until another maps them

    def trim(self, keep: set[str] = frozenset()) -> int:
        return 0

    def sweep(self) -> None:
        pass

    def close(self) -> None:
        pass
