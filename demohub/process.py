"""The hub's handle on one worker process: start it, wait for its model, call
it with a deadline, measure it, and end it."""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable

import psutil

from demohub import wire
from demohub.errors import InputError, WorkerFailed, WorkerTimeout
from demohub.spec import DemoSpec

PROJECT_ROOT = Path(__file__).resolve().parent.parent

MEMORY_METRICS = ("pss", "uss", "rss")


def process_memory(pid: int, metric: str = "pss") -> int:
    """Bytes used by one process, by the chosen measure (0 if it is gone)."""
    try:
        proc = psutil.Process(pid)
        if metric == "rss":
            return proc.memory_info().rss
        return getattr(proc.memory_full_info(), metric)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return 0


@dataclass(frozen=True)
class LoadInfo:
    seconds: float


class WorkerProcess:
    """One model in one process. Not thread-safe: the registry serialises calls."""

    def __init__(self, spec: DemoSpec, proc: subprocess.Popen, conn: Connection):
        self.spec = spec
        self._proc = proc
        self._conn = conn

    @classmethod
    def start(
        cls,
        spec: DemoSpec,
        model_dir: Path,
        *,
        placeholder: bool = False,
        threads: int | None = None,
    ) -> "WorkerProcess":
        parent_sock, child_sock = socket.socketpair()
        cmd = [
            sys.executable,
            "-m",
            "demohub.worker",
            "--fd",
            str(child_sock.fileno()),
            "--runtime",
            spec.runtime,
            "--model-dir",
            str(model_dir),
        ]
        if placeholder:
            cmd.append("--placeholder")
        if spec.import_root:
            cmd += ["--import-root", str(spec.import_root)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
        )
        if threads:
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
                env[var] = str(threads)
            env["TF_NUM_INTEROP_THREADS"] = "1"
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            proc = subprocess.Popen(
                cmd,
                pass_fds=(child_sock.fileno(),),
                env=env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            child_sock.close()
        return cls(spec, proc, Connection(parent_sock.detach()))

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None

    def memory(self, metric: str = "pss") -> int:
        return process_memory(self.pid, metric) if self.alive() else 0

    def _describe_death(self) -> str:
        code = self._proc.poll()
        if code is None:
            return "stopped answering"
        if code < 0:
            return f"was killed by signal {-code}"
        return f"exited with code {code}"

    def _receive(self, timeout: float, what: str, tick: Callable[[], None] | None) -> tuple:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise WorkerTimeout(
                    f"the {self.spec.name} model did not finish {what} within {timeout:.0f} s; "
                    "its worker was stopped and will restart on the next request"
                )
            try:
                if self._conn.poll(min(remaining, 0.25)):
                    return wire.recv_guarded(self._conn)
            except pickle.UnpicklingError as exc:
                raise WorkerFailed(f"the {self.spec.name} model returned an unusable result: {exc}") from None
            except (EOFError, OSError):
                self._proc.wait(timeout=5)
                raise WorkerFailed(
                    f"the {self.spec.name} model's worker {self._describe_death()} during {what}; "
                    "it will restart on the next request"
                ) from None
            if tick:
                tick()

    def wait_ready(self, timeout: float, tick: Callable[[], None] | None = None) -> LoadInfo:
        reply = self._receive(timeout, "loading", tick)
        if reply[0] == wire.READY:
            return LoadInfo(seconds=reply[1]["load_s"])
        self.kill()
        raise WorkerFailed(f"the {self.spec.name} model failed to load: {reply[1]}")

    def call(self, request: Any, timeout: float) -> tuple[Any, float]:
        """Run one prediction; returns (result, seconds spent in predict)."""
        try:
            wire.send(self._conn, (wire.PREDICT, request))
        except (BrokenPipeError, ConnectionResetError, OSError):
            self._proc.wait(timeout=5)
            raise WorkerFailed(
                f"the {self.spec.name} model's worker {self._describe_death()}; "
                "it will restart on the next request"
            ) from None
        reply = self._receive(timeout, "a prediction", None)
        kind = reply[0]
        if kind == wire.OK:
            return reply[1], reply[2]
        if kind == wire.INPUT_ERROR:
            raise InputError(reply[1])
        raise WorkerFailed(f"the {self.spec.name} model failed on this request: {reply[1]}")

    def stop(self, grace: float = 2.0) -> None:
        """Ask politely, then kill; always reap so no zombie is left."""
        if self.alive():
            try:
                wire.send(self._conn, (wire.STOP, None))
            except OSError:
                pass
            try:
                self._proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        if self.alive():
            try:
                self._proc.kill()
            except ProcessLookupError:
                pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._conn.close()

