"""A worker template: a process that has imported one framework family (torch,
TensorFlow, or none) and that family's demo runtimes, and forks one worker per
model on the hub's request (`--start-method template`).

Run by the template backend as `python -m demohub.backends.local.template_main ...`; never
imported by the hub process. A cold load then skips the interpreter start and
the framework import (most of it), and the workers share the template's pages
(the framework's code and heap) copy-on-write.

Fork safety: the template forks only while it has exactly one thread (no
framework thread pool started, nothing holding a lock in another thread), and
after `gc.freeze()`, so the collector in a child does not touch (and copy) the
template's objects. If importing the family leaves threads behind, the template
says so in its hello and the backend keeps that family on the spawn path.

Process ownership: the template double-forks, so the worker is orphaned at once
and re-parented to the hub, which marks itself a child subreaper
(PR_SET_CHILD_SUBREAPER): the hub waits for, kills and reaps its workers as it
does spawned ones, the worker's `getppid()` is the hub (so it exits when the hub
dies), and the template can end while its workers keep serving.

Control protocol (JSON over a SOCK_SEQPACKET socket, one message per packet):
  template -> hub   {"hello": {...threads, imported, failed, import_s}}
  hub -> template   {"fork": {...}} + the worker's socket end (SCM_RIGHTS)
  template -> hub   {"forked": pid} or {"error": message}
The template exits when the hub closes its end (or dies) or sends {"stop"}.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib
import json
import os
import resource
import select
import socket
import sys
import time
import traceback
from pathlib import Path

gc.disable()  # no collection between imports and the fork leaves holes in shared pages

from demohub.backends.local import wire  # noqa: E402 - light; after gc.disable on purpose

_PR_SET_NAME = 15
_MADV_DONTNEED = 4
MAX_PACKET = 64 * 1024


def thread_names(pid: int | str = "self") -> list[str]:
    """The names of a process's threads, from /proc (one per thread)."""
    names = []
    task = f"/proc/{pid}/task"
    for tid in sorted(os.listdir(task)):
        try:
            with open(f"{task}/{tid}/comm") as f:
                names.append(f.read().strip())
        except FileNotFoundError:
            pass  # a thread that ended while we looked
    return names


def set_process_name(name: str) -> None:
    """Name the process in /proc/PID/comm (what `top` and psutil's name() show)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass


def release_file_pages() -> int:
    """Drop the clean file-backed pages the imports faulted in (the dynamic
    loader reads large symbol tables of the framework's libraries once): they
    stay in the page cache, a worker that needs one faults it back, and the
    template stops being charged for pages no process uses. Only read-only
    private mappings with no private copy are touched, so nothing is lost.
    Returns the bytes released from this process's resident set."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    released = 0
    candidate: tuple[int, int] | None = None
    resident = anonymous = 0

    def flush() -> int:
        if candidate is None or not resident or anonymous:
            return 0
        start, end = candidate
        return resident if libc.madvise(start, end - start, _MADV_DONTNEED) == 0 else 0

    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            first = line.split(None, 1)[0]
            if not first.endswith(":"):  # a new mapping: "start-end perms offset dev inode [path]"
                released += flush()
                fields = line.split()
                start, end = (int(x, 16) for x in fields[0].split("-"))
                path = fields[5] if len(fields) > 5 else ""
                perms = fields[1]
                private_readonly = "w" not in perms and perms.endswith("p")
                candidate = (start, end) if private_readonly and path.startswith("/") else None
                resident = anonymous = 0
            elif first == "Rss:":
                resident = int(line.split()[1]) * 1024
            elif first == "Anonymous:":
                anonymous = int(line.split()[1])
        released += flush()
    return released


def import_family(runtimes: list[str]) -> tuple[list[str], dict[str, str]]:
    """Import each runtime; a failure is kept for the child to report properly."""
    imported, failed = [], {}
    for name in runtimes:
        try:
            importlib.import_module(name)
            imported.append(name)
        except BaseException as exc:  # noqa: BLE001 - the worker re-imports and reports it
            failed[name] = f"{type(exc).__name__}: {exc}"
    return imported, failed


def send(sock: socket.socket, message: dict) -> None:
    sock.sendall(json.dumps(message).encode())


def fork_worker(request: dict, worker_fd: int, control: socket.socket) -> int:
    """Double-fork a worker serving `request`'s model on `worker_fd`; returns its pid
    once it has been re-parented (its first parent has exited)."""
    read_end, write_end = os.pipe()
    middle = os.fork()
    if middle == 0:  # the short-lived middle process
        code = 0
        try:
            os.close(read_end)
            me = os.getpid()
            worker = os.fork()
            if worker == 0:
                os.close(write_end)
                control.close()
                _worker(request, worker_fd, me)  # never returns
            os.write(write_end, str(worker).encode())
        except BaseException:  # noqa: BLE001 - the template reports a failed fork
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as pipe:
            text = pipe.read()
    finally:
        os.waitpid(middle, 0)
    if not text:
        raise OSError("the fork failed in the middle process")
    return int(text)


def _worker(request: dict, worker_fd: int, middle: int) -> None:
    """The forked worker: wait to be re-parented to the hub, then serve exactly as
    a spawned worker does."""
    code = 1
    try:
        gc.enable()
        set_process_name(f"w:{request['name']}")
        hub = request["hub_pid"]
        deadline = time.monotonic() + 10.0
        while os.getppid() == middle and time.monotonic() < deadline:
            time.sleep(0.001)  # the middle process is exiting
        if os.getppid() != hub:
            os._exit(4)  # not adopted by the hub (it died, or is no subreaper): nobody would reap us
        os.environ.update(request.get("env") or {})
        from demohub.backends.local.worker import die_with_parent, serve_model

        die_with_parent(hub)
        code = serve_model(wire.Channel.from_fd(worker_fd), request["runtime"], Path(request["model_dir"]),
                           placeholder=bool(request.get("placeholder")))
    except BaseException:  # noqa: BLE001 - last resort: say why on stderr
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(control: socket.socket, hub: int) -> int:
    """Answer fork requests until the hub goes away or says stop."""
    while True:
        ready, _, _ = select.select([control], [], [], 1.0)
        if os.getppid() != hub:
            return 3
        if not ready:
            continue
        try:
            data, fds, _, _ = socket.recv_fds(control, MAX_PACKET, 1)
        except OSError:
            return 0
        if not data:
            return 0  # the hub closed its end
        message = json.loads(data)
        if "stop" in message:
            return 0
        request = message.get("fork")
        if request is None or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            send(control, {"error": "a fork request needs one socket"})
            continue
        try:
            names = thread_names()
            if len(names) != 1:
                raise RuntimeError(f"the template has {len(names)} threads ({', '.join(names)}); "
                                   "forking it could deadlock the worker")
            gc.freeze()
            pid = fork_worker(request, fds[0], control)
        except Exception as exc:  # noqa: BLE001 - the hub falls back to spawning
            send(control, {"error": f"{type(exc).__name__}: {exc}"})
        else:
            send(control, {"forked": pid})
        finally:
            os.close(fds[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="control socket to the hub")
    parser.add_argument("--family", required=True)
    parser.add_argument("--runtime", action="append", default=[], help="runtime module to import")
    parser.add_argument("--preload", action="append", default=[],
                        help="framework module a runtime imports lazily (imported first)")
    parser.add_argument("--import-root", action="append", default=[], type=Path)
    args = parser.parse_args(argv)

    hub = os.getppid()
    set_process_name(f"template:{args.family}")
    for root in args.import_root:
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
    control = socket.socket(fileno=args.fd)
    started = time.perf_counter()
    imported, failed = import_family(args.preload + args.runtime)
    gc.collect()
    gc.freeze()
    released = release_file_pages()
    from demohub.device import cuda_context_created

    send(control, {"hello": {"family": args.family, "threads": thread_names(), "imported": imported,
                             "failed": failed, "import_s": time.perf_counter() - started,
                             "released_bytes": released, "cuda_context": cuda_context_created(),
                             # what it held at most while importing: what a start of it costs the budget
                             "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}})
    return serve(control, hub)


if __name__ == "__main__":
    sys.exit(main())
