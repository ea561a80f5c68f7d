"""Worker process: loads one demo's model and answers predictions until told
to stop or until the hub goes away.

Run by the hub as `python -m demohub.backends.local.worker ...` (spawn backend), or entered
through `serve_model` in a child forked from a template (template backend);
never imported by the hub process itself. Each model lives in its own process
so that evicting it (ending the process) really returns its memory to the OS,
and so that a crash or hang in one model cannot reach the hub or the others.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pickle
import shutil
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from types import ModuleType

from demohub import batching, contract, heap
from demohub.backends.local import wire
from demohub.errors import InputError


def die_with_parent(parent: int, poll_s: float = 1.0) -> None:
    """Exit if the hub goes away, even mid-prediction.

    (PR_SET_PDEATHSIG would fire when the hub *thread* that started us exits,
    which Gradio's thread pool does routinely, so we watch our parent instead.)
    """

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def build_placeholder(runtime: ModuleType, target: Path) -> Path:
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


class Threads:
    """Applies the CPU threads the hub grants each call to the framework this
    worker has imported (torch can change its pool between calls; TensorFlow
    fixes its pools at start, from the environment the backend set)."""

    def __init__(self) -> None:
        self.current: int | None = None

    def apply(self, threads: int | None) -> None:
        if not threads or threads == self.current:
            return
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(threads)
        self.current = threads


def reply(runtime: ModuleType, model: object, payload: object) -> bytes:
    """The pickled reply to one request; never raises for the model's faults."""
    started = time.perf_counter()
    try:
        if isinstance(payload, batching.Batch):
            result = batching.run_batch(runtime, model, payload)
        else:
            result = runtime.predict(model, payload)
    except InputError as exc:
        return _dumps((wire.INPUT_ERROR, str(exc)))
    except Exception as exc:  # noqa: BLE001 - reported to the hub, worker keeps serving
        return _dumps((wire.ERROR, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    seconds = time.perf_counter() - started
    try:
        return _dumps((wire.OK, result, seconds))
    except Exception as exc:  # noqa: BLE001 - an unpicklable result fails this request only
        return _dumps((wire.ERROR,
                       f"{runtime.__name__}.predict returned {type(result).__name__}, which cannot be sent "
                       f"to the hub ({exc}); return plain data: numbers, strings, lists, dicts, numpy "
                       "arrays or dataclasses", traceback.format_exc()))


def _dumps(message: tuple) -> bytes:
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def serve(channel: wire.Channel, runtime: ModuleType, model: object) -> None:
    threads = Threads()
    while True:
        try:
            message = channel.recv(guarded=False)
            if message[0] == wire.STOP:
                return
            _, payload, options = message
            threads.apply((options or {}).get("threads"))
            channel.send_bytes(reply(runtime, model, payload))
        except (EOFError, OSError):
            return


def fresh_demo_modules(runtime_name: str) -> None:
    """With --reload, a worker forked from a template must not run the demo code
    the template imported when it started: drop the demos' own modules and the
    author's kit, so this demo's import reads its files as saved now. The framework
    the template imported stays (torch alone takes ~2.5 s to import again)."""
    from demohub.reload import forget_modules

    forget_modules((runtime_name.partition(".")[0], "demohub.kit"))


def serve_model(channel: wire.Channel, runtime_name: str, model_dir: Path, *,
                placeholder: bool = False) -> int:
    """Load the model, say READY (or LOAD_FAILED with the traceback), then serve."""
    started = time.perf_counter()
    tempfile.tempdir = None  # a forked worker: read TMPDIR (its own folder) again, not the template's
    heap.keep_working_set()
    try:
        if os.environ.get("HUB_RELOAD") == "1":
            fresh_demo_modules(runtime_name)
        runtime = importlib.import_module(runtime_name)
        contract.check_runtime(runtime)  # fail at load, naming the file, not on a visitor's request
        if placeholder:
            model_dir = build_placeholder(runtime, model_dir)
        model = runtime.load(model_dir)
    except BaseException as exc:  # noqa: BLE001 - the hub shows it on the Status tab
        channel.send((wire.LOAD_FAILED, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        return 1
    channel.send((wire.READY, {"load_s": time.perf_counter() - started}))
    serve(channel, runtime, model)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="socket to the hub")
    parser.add_argument("--runtime", required=True, help="module with load() and predict()")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--placeholder", action="store_true", help="build the folder first")
    parser.add_argument("--import-root", type=Path, default=None)
    args = parser.parse_args(argv)

    die_with_parent(os.getppid())
    if args.import_root:
        sys.path.insert(0, str(args.import_root))
    return serve_model(wire.Channel.from_fd(args.fd), args.runtime, args.model_dir,
                       placeholder=args.placeholder)


if __name__ == "__main__":
    sys.exit(main())
