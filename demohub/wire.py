"""The message format between the hub and its workers.

Messages are pickled tuples over a socketpair. Both ends are our own code, but
the main process still unpickles with a guard: a result that references torch,
TensorFlow or tokenizers would silently import that framework into the hub
process (and keep its memory there forever), so it is refused with a message
that tells the demo author what to return instead.
"""

from __future__ import annotations

import io
import pickle
from multiprocessing.connection import Connection
from typing import Any

#: Frameworks that must stay inside worker processes.
WORKER_ONLY_MODULES = frozenset(
    {"torch", "torchvision", "tensorflow", "keras", "tokenizers", "jax", "tf_keras"}
)

# Requests (hub -> worker)
PREDICT = "predict"
STOP = "stop"

# Replies (worker -> hub)
READY = "ready"  # (READY, {"load_s": float})
LOAD_FAILED = "load_failed"  # (LOAD_FAILED, message, traceback)
OK = "ok"  # (OK, result, predict_seconds)
INPUT_ERROR = "input_error"  # (INPUT_ERROR, message)
ERROR = "error"  # (ERROR, message, traceback)


class _GuardedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] in WORKER_ONLY_MODULES:
            raise pickle.UnpicklingError(
                f"a worker returned a {module}.{name} object; results must be plain data "
                "(numbers, strings, lists, dicts, numpy arrays or light dataclasses) so the "
                "hub process never imports a framework"
            )
        return super().find_class(module, name)


def send(conn: Connection, message: tuple) -> None:
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def recv_guarded(conn: Connection) -> tuple:
    """Receive one message in the hub process (framework objects refused)."""
    return _GuardedUnpickler(io.BytesIO(conn.recv_bytes())).load()


def recv(conn: Connection) -> tuple:
    """Receive one message in a worker (trusted: it came from the hub)."""
    return pickle.loads(conn.recv_bytes())
