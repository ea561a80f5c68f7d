"""Start the demo hub: `python hub.py --help` lists the settings."""

from __future__ import annotations

import errno
import importlib.util
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import uvicorn

from demohub import heap, tempdir
from demohub.checks import check_budget, check_models
from demohub.config import HubConfig, fail, load_config, warn
from demohub.discovery import DemoError, discover_all
from demohub.kit import cache
from demohub.loadtimes import Measured
from demohub.registry import Registry
from demohub.sources import ModelSources

#: seconds in-flight HTTP requests get to finish once the hub is asked to stop
GRACEFUL_S = 10
#: the same when --reload restarts the hub because its own code changed
RESTART_GRACE_S = 1.0


class StopSignals:
    """SIGTERM/SIGINT while the hub serves or shuts down: recorded, never raised.

    A handler that raised (SystemExit) would unwind whatever the main thread was
    doing, so a second SIGTERM during shutdown used to abort `registry.close()`
    half-way, leaving workers and templates to notice on their own. Here a signal
    only asks the server to stop; the main thread then cleans up in full and
    exits with 128 + the signal's number."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.server: uvicorn.Server | None = None
        #: --reload: the hub's own code changed; once stopped, it starts again (`main`)
        self.restart: str | None = None

    def restart_for(self, why: str) -> None:
        """Stop serving, then start again in a fresh process (as `uvicorn --reload`).
        An open page holds a stream (dev/reload) that never ends by itself: requests
        get RESTART_GRACE_S to finish, not the GRACEFUL_S of a production stop."""
        self.restart = why
        if self.server is not None:
            self.server.config.timeout_graceful_shutdown = RESTART_GRACE_S
            self.server.should_exit = True

    def __call__(self, signum: int, _frame) -> None:
        self.received.append(signum)
        if self.server is not None:
            self.server.should_exit = True

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self)

    @property
    def exit_code(self) -> int:
        return 128 + self.received[0] if self.received else 0


class BindError(OSError):
    """The address cannot be served; the message says what to change."""


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port), before anything else starts, so a port in
    use or a host that is not this machine's ends the hub at once with a sentence."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BindError(f"--host {host}: no such host ({exc.strerror}); use an address of this machine, "
                        "e.g. 127.0.0.1 or 0.0.0.0") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BindError(f"--port {port}: already in use on {host}; stop what holds it "
                            "or choose another port") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise BindError(f"--host {host}: not an address of this machine; use one it has, "
                            "e.g. 127.0.0.1 or 0.0.0.0") from None
        if exc.errno == errno.EACCES:
            raise BindError(f"--port {port}: the system refuses it to this user (ports below 1024 need "
                            "privileges); choose 1024 or above, e.g. 7860") from None
        raise BindError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, saying where it serves only once it does."""

    def __init__(self, config: uvicorn.Config, announce) -> None:
        super().__init__(config)
        self._announce = announce

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._announce()


def main(argv: list[str] | None = None) -> int:
    heap.tune()  # before any server thread exists (see demohub/heap.py)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    config = load_config(argv)  # a bad setting ends here: argparse's usage, one sentence, exit 2
    if config.mcp and importlib.util.find_spec("mcp") is None:
        return fail("--mcp: needs the `mcp` package, which requirements.txt installs: run scripts/setup.sh "
                    '(or .venv/bin/pip install "gradio[mcp]==6.31.0")')
    try:
        sock = bind(config.host, config.port)
    except BindError as exc:
        return fail(str(exc))
    # This run's GRADIO_TEMP_DIR, set before anything imports Gradio (parts of it read it then).
    temp_folder = tempdir.claim()
    stop = StopSignals()
    try:
        code = serve(config, temp_folder, sock, stop)
    finally:
        sock.close()
        tempdir.release(temp_folder)
    if stop.restart and not stop.received:
        print(f"demo hub: restarting: {stop.restart}", file=sys.stderr, flush=True)
        os.execv(sys.executable, [sys.executable, *sys.argv])
    return code


def serve(config: HubConfig, temp_folder: Path, sock: socket.socket, stop: StopSignals) -> int:
    from demohub.web.app import ReloadSettings, create_app

    stop.install()  # from here a signal is noted and acted on between steps, never mid-step
    for notice in config.notices:
        warn(notice)
    try:
        # --reload: a broken folder is shown on its tab (the author is fixing it), not fatal
        specs, broken = discover_all(config.demos_dir, config.only, keep_going=config.reload)
    except DemoError as exc:  # a folder that breaks the plugin contract: say which, not a traceback
        return fail(str(exc))
    folders = [p.name for p in config.demos_dir.iterdir() if (p / "__init__.py").is_file() and p.name not in broken]
    errors, warnings = check_models([*folders, *(s.name for s in specs)], config.models, config.model_settings)
    if errors:
        return fail(errors[0])
    for warning in warnings:
        warn(warning)
    try:
        config.cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return fail(f"--cache-dir {config.cache_dir}: cannot create it ({exc.strerror}); choose a folder "
                    "the hub can write")
    measured = Measured(config.cache_dir)
    problem = check_budget(config.limits.memory_budget, config.limits.memory_metric,
                           [s.name for s in specs], measured.all())
    if problem:
        return fail(problem)
    sources = ModelSources(specs, config.models_dir, config.placeholder_dir, config.models)
    os.environ[cache.ENV] = str(config.cache_dir)  # before any worker or template is started
    from demohub.backends import make_backend

    options = dict(config.backend_options)
    if config.backend == "template":
        options["specs"] = specs  # each family's template imports its demos' runtimes
        options["sizes_file"] = config.cache_dir / "templates.json"  # what the budget plans a template at
    if stop.received:
        return stop.exit_code
    try:
        backend = make_backend(config.backend, **options)
    except ConnectionError as exc:  # e.g. no Ray cluster at --ray-address
        return fail(str(exc))
    registry = Registry(specs, sources, config.limits, backend=backend, measured=measured)
    reload = ReloadSettings(config.demos_dir, config.only, config.models, broken) if config.reload else None
    app = create_app(specs, registry, sources, queue_size=config.queue_size, mcp=config.mcp,
                     door=config.door, temp_folder=temp_folder, queue_rest_after_s=config.queue_rest_after_s,
                     reload=reload, status_every_s=config.status_every_s)
    watcher = None
    if config.reload:
        from demohub.reload import HUB_DIR, Watcher
        from demohub.web.live import apply_changes

        live = app.state.live_page
        local = [config.models_dir, *(m.local_dir for m in config.models.values() if m.local_dir)]
        watcher = Watcher([config.demos_dir, HUB_DIR, *local],
                          lambda changes: apply_changes(changes, live, stop.restart_for))
    port = sock.getsockname()[1]  # the OS's choice with --port 0

    address = f"[{config.host}]" if ":" in config.host else config.host

    def announce() -> None:
        print(f"demo hub: {len(specs)} demos ({', '.join(s.name for s in specs)}) on "
              f"http://{address}:{port}", file=sys.stderr, flush=True)
        if watcher is not None:
            print(f"demo hub: reload mode: watching {', '.join(str(p) for p in watcher.paths)}; a saved file "
                  "reloads what it changes", file=sys.stderr, flush=True)

    # proxy_headers=False: the app reads X-Forwarded-For itself, from --forwarded-allow-ips only
    server = _Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=GRACEFUL_S,
                                    proxy_headers=False), announce)
    stop.server = server  # uvicorn swaps in its own handler while it serves and hands what it caught back
    stop.install()  # again: a backend's client library (Ray's) may have set its own meanwhile
    try:
        sources.start()
        registry.start()
        if watcher is not None:
            watcher.start()
        if not stop.received:
            server.run(sockets=[sock])
    finally:
        if watcher is not None:
            watcher.close()
        sources.close()
        registry.close()
    print("demo hub: stopped", file=sys.stderr, flush=True)
    return stop.exit_code


if __name__ == "__main__":
    sys.exit(main())
