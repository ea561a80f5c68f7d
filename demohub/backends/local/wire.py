"""The message format between the hub and a local worker: pickled tuples over
a socket, each framed by an 8-byte length.

Every wait on the hub's side has a deadline that covers the whole exchange:
sending a 5 MB request to a stopped worker times out like a slow reply does.

The hub unpickles with a guard: a result that references torch, TensorFlow or
tokenizers would silently import that framework into the hub process (and keep
its memory there forever), so it is refused with a message that tells the demo
author what to return instead.
"""

from __future__ import annotations

import io
import pickle
import select
import socket
import struct
import sys
import time
from typing import Any, Callable

#: Frameworks that must stay inside worker processes, even if something in the
#: hub imported them by accident. Any module the hub has not imported yet is
#: refused too (a `transformers` output class would import transformers, and
#: torch with it), so this list is a backstop, not the rule.
WORKER_ONLY_MODULES = frozenset(
    {"torch", "torchvision", "tensorflow", "keras", "tokenizers", "jax", "tf_keras", "transformers"}
)
#: Our own code and numpy are light; any of their modules may be imported to unpickle.
ALWAYS_ALLOWED = frozenset({"demohub", "numpy"})

# Requests (hub -> worker)
PREDICT = "predict"  # (PREDICT, request, {"threads": int | None})
STOP = "stop"

# Replies (worker -> hub)
READY = "ready"  # (READY, {"load_s": float})
LOAD_FAILED = "load_failed"  # (LOAD_FAILED, message, traceback)
OK = "ok"  # (OK, result, predict_seconds)
INPUT_ERROR = "input_error"  # (INPUT_ERROR, message)
ERROR = "error"  # (ERROR, message, traceback)

_HEADER = struct.Struct("!Q")


class ChannelTimeout(TimeoutError):
    """The deadline passed mid-exchange; the channel is no longer usable."""


def importable_in_hub(module: str) -> bool:
    """Unpickling may import `module` in the hub only if that costs nothing."""
    top = module.split(".")[0]
    if top in WORKER_ONLY_MODULES:
        return False
    return module in sys.modules or top in ALWAYS_ALLOWED


class _GuardedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if not importable_in_hub(module):
            raise pickle.UnpicklingError(
                f"a worker returned a {module}.{name} object; results must be plain data "
                "(numbers, strings, lists, dicts, numpy arrays or light dataclasses) so the "
                "hub process never imports a framework"
            )
        return super().find_class(module, name)


def loads_guarded(data: bytes) -> Any:
    """Unpickle in the hub process, refusing objects of modules it has not imported."""
    return _GuardedUnpickler(io.BytesIO(data)).load()


class Channel:
    """One end of the hub-worker socket. Not thread-safe: one owner at a time."""

    def __init__(self, sock: socket.socket):
        self._sock = sock

    @classmethod
    def from_fd(cls, fd: int) -> "Channel":
        return cls(socket.socket(fileno=fd))

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    # -- sending ---------------------------------------------------------------

    def send(self, message: tuple, deadline: float | None = None) -> None:
        """Send one message; raises ChannelTimeout past `deadline` (monotonic)."""
        self.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL), deadline)

    def send_bytes(self, data: bytes, deadline: float | None = None) -> None:
        self._sock.settimeout(_remaining(deadline))
        try:
            self._sock.sendall(_HEADER.pack(len(data)) + data)
        except socket.timeout:
            raise ChannelTimeout("send") from None

    # -- receiving -------------------------------------------------------------

    def wait_readable(self, deadline: float | None, tick: Callable[[], None] | None = None,
                      tick_s: float = 0.25) -> None:
        """Wait until a message starts arriving, calling `tick` now and then."""
        while True:
            remaining = _remaining(deadline)
            if remaining is not None and remaining <= 0.001:
                raise ChannelTimeout("receive")
            wait = tick_s if remaining is None else min(tick_s, remaining)
            readable, _, _ = select.select([self._sock], [], [], wait)
            if readable:
                return
            if tick:
                tick()

    def recv(self, deadline: float | None = None, guarded: bool = True) -> tuple:
        """Receive one message. The hub receives `guarded`; a worker trusts the hub."""
        header = self._read(_HEADER.size, deadline)
        data = self._read(_HEADER.unpack(header)[0], deadline)
        return loads_guarded(data) if guarded else pickle.loads(data)

    def _read(self, n: int, deadline: float | None) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            self._sock.settimeout(_remaining(deadline))
            try:
                chunk = self._sock.recv_into(view[got:], n - got)
            except socket.timeout:
                raise ChannelTimeout("receive") from None
            if chunk == 0:
                raise EOFError("the other end closed the connection")
            got += chunk
        return bytes(buf)


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(0.001, deadline - time.monotonic())
