"""Worker process: loads one demo's model and answers predictions until told
to stop or until the hub goes away.

Run by the hub as `python -m demohub.worker ...`; never imported by the hub.
Each model lives in its own process so that evicting it (ending the process)
really returns its memory to the OS, and so that a crash or hang in one model
cannot reach the hub or the other models.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path

from demohub import wire
from demohub.errors import InputError


def _die_with_parent(poll_s: float = 1.0) -> None:
    """Exit if the hub goes away, even mid-prediction.

    (PR_SET_PDEATHSIG would fire when the hub *thread* that started us exits,
    which Gradio's thread pool does routinely, so we watch our parent instead.)
    """
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def build_placeholder(runtime, target: Path) -> Path:
    """Write the runtime's untrained placeholder folder, atomically."""
    if (target / "config.json").exists():
        return target
    if not hasattr(runtime, "placeholder"):
        raise FileNotFoundError(f"no model folder at {target} and the demo has no placeholder")
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        runtime.placeholder(tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def serve(conn: Connection, runtime, model) -> None:
    while True:
        try:
            op, payload = wire.recv(conn)
        except (EOFError, OSError):
            return
        if op == wire.STOP:
            return
        started = time.perf_counter()
        try:
            result = runtime.predict(model, payload)
        except InputError as exc:
            wire.send(conn, (wire.INPUT_ERROR, str(exc)))
        except Exception as exc:  # noqa: BLE001 - reported to the hub, worker keeps serving
            wire.send(conn, (wire.ERROR, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        else:
            wire.send(conn, (wire.OK, result, time.perf_counter() - started))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="socket to the hub")
    parser.add_argument("--runtime", required=True, help="module with load() and predict()")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--placeholder", action="store_true", help="build the folder first")
    parser.add_argument("--import-root", type=Path, default=None)
    args = parser.parse_args(argv)

    _die_with_parent()
    conn = Connection(args.fd)
    if args.import_root:
        sys.path.insert(0, str(args.import_root))
    started = time.perf_counter()
    try:
        runtime = importlib.import_module(args.runtime)
        model_dir = args.model_dir
        if args.placeholder:
            model_dir = build_placeholder(runtime, model_dir)
        model = runtime.load(model_dir)
    except BaseException as exc:  # noqa: BLE001 - the hub shows it on the tab
        wire.send(conn, (wire.LOAD_FAILED, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        return 1
    wire.send(conn, (wire.READY, {"load_s": time.perf_counter() - started}))
    serve(conn, runtime, model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
