"""The replica side: what runs in a Serve replica on a Ray worker, never in the hub.

Serve pickles `DemoReplica` by reference, so every replica imports this module
by its path (and with it the package's __init__, whose head and backend import
neither Ray, Gradio nor the registry). This module imports only `wire`; Ray,
`demohub.backends.local.worker` and the demo's runtime are imported inside the replica.
"""

from __future__ import annotations

import importlib
import os
import pickle
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from demohub.backends.local import wire


def node_model_dir(model_dir: str) -> Path:
    """The model folder on the node running this replica.

    A path that exists here is used as is (one machine, or a shared volume).
    A Hugging Face cache snapshot path (`.../models--org--name/snapshots/<sha>`)
    that does not is downloaded again on this node, into this node's own cache.
    Anything else is left for the placeholder builder or `load` to report.
    """
    path = Path(model_dir)
    if path.exists():
        return path
    parts = path.parts
    if "snapshots" in parts:
        i = parts.index("snapshots")
        repo = parts[i - 1] if i > 0 else ""
        if repo.startswith("models--") and i + 1 < len(parts):
            from huggingface_hub import snapshot_download

            repo_id = repo[len("models--"):].replace("--", "/", 1)
            return Path(snapshot_download(repo_id, revision=parts[i + 1],
                                          cache_dir=os.environ.get("HF_HUB_CACHE") or None,
                                          endpoint=os.environ.get("HF_ENDPOINT") or None))
    return path


def _bind_replica_grpc_to_node_ip() -> None:
    """Serve 2.60 starts each replica's inter-deployment gRPC server on "[::]:0"
    (every interface) with no setting to change it, right after our constructor
    returns. Bind it to the node's own address instead: 127.0.0.1 on a
    loopback-only node, the address other nodes use in a cluster. (Our calls
    go through Ray actor calls, not this server.)"""
    import ray
    from ray.serve._private import replica

    original = replica.add_port_to_grpc_server
    if getattr(original, "_demohub", False):
        return
    host = ray.util.get_node_ip_address()
    host = f"[{host}]" if ":" in host else host

    def bind(server: Any, address: str) -> int:
        if address.startswith("[::]:"):
            address = f"{host}:{address.rsplit(':', 1)[1]}"
        return original(server, address)

    bind._demohub = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = bind


class DemoReplica:
    """One copy of a demo's model inside a Serve replica: the same steps as a
    spawn worker (`demohub.backends.local.worker`), so a demo behaves the same on Ray.

    A load failure is kept and reported (rather than raised) so the hub gets
    the demo's own message at once instead of Serve retrying the constructor.
    """

    def __init__(self, runtime: str, import_root: str | None, model_dir: str, placeholder: bool):
        from demohub import contract, heap
        from demohub.backends.local import worker

        _bind_replica_grpc_to_node_ip()
        heap.keep_working_set()  # a replica's actor process serves only this model, as a worker does
        started = time.perf_counter()
        self._runtime: Any = None
        self._model: Any = None
        self._load_error: str | None = None
        self._threads = worker.Threads()
        try:
            if import_root and import_root not in sys.path:
                sys.path.insert(0, import_root)
            module = importlib.import_module(runtime)
            contract.check_runtime(module)
            path = node_model_dir(model_dir)
            if placeholder:
                path = worker.build_placeholder(module, path)
            self._model = module.load(path)
            self._runtime = module
        except BaseException as exc:  # noqa: BLE001 - reported to the hub by info()/predict()
            self._load_error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        self._load_s = time.perf_counter() - started

    def info(self) -> bytes:
        import ray

        return pickle.dumps({"load_s": self._load_s, "pid": os.getpid(), "error": self._load_error,
                             "node_id": ray.get_runtime_context().get_node_id(), "memory": self.memory()})

    def memory(self) -> dict[str, int]:
        """This replica's own PSS/USS/RSS: the hub reads /proc only on its own
        machine, so a replica on another node reports itself."""
        from demohub.memory import rollup

        return rollup(os.getpid())

    def predict(self, payload: bytes, threads: int | None = None) -> bytes:
        """`payload` is a pickled request (or batch) from our own hub; the reply
        is the worker's pickled reply tuple."""
        from demohub.backends.local import worker

        if self._load_error is not None:
            return pickle.dumps((wire.LOAD_FAILED, self._load_error.splitlines()[0], self._load_error))
        self._threads.apply(threads)
        return worker.reply(self._runtime, self._model, pickle.loads(payload))
