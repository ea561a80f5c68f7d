"""Start the demo hub: `python hub.py --help` lists the settings."""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import sys
from pathlib import Path

import uvicorn

from demohub import heap, tempdir
from demohub.config import HubConfig, load_config
from demohub.discovery import DemoError, discover
from demohub.kit import cache
from demohub.registry import Registry
from demohub.sources import ModelSources


def _exit_on_signal(signum: int, _frame) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    heap.tune()  # before any server thread exists (see demohub/heap.py)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    config = load_config(argv)
    if config.mcp and importlib.util.find_spec("mcp") is None:
        print('error: --mcp needs the MCP extra: .venv/bin/pip install "gradio[mcp]==6.31.0" '
              "(kept out of requirements.txt: it pins an older pydantic)", file=sys.stderr)
        return 2
    # This run's GRADIO_TEMP_DIR, set before anything imports Gradio (parts of it read it then).
    temp_folder = tempdir.claim()
    try:
        return serve(config, temp_folder)
    finally:
        tempdir.release(temp_folder)


def serve(config: HubConfig, temp_folder: Path) -> int:
    from demohub.app import create_app

    try:
        specs = discover(config.demos_dir, config.only)
    except DemoError as exc:  # a folder that breaks the plugin contract: say which, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sources = ModelSources(specs, config.models_dir, config.placeholder_dir, config.models)
    os.environ[cache.ENV] = str(config.cache_dir)  # before any worker or template is started
    from demohub.backends import make_backend

    options = dict(config.backend_options)
    if config.backend == "template":
        options["specs"] = specs  # each family's template imports its demos' runtimes
    try:
        backend = make_backend(config.backend, **options)
    except ConnectionError as exc:  # e.g. no Ray cluster at --ray-address
        print(f"error: {exc}", file=sys.stderr)
        return 2
    registry = Registry(specs, sources, config.limits, backend=backend)
    app = create_app(specs, registry, sources, queue_size=config.queue_size, mcp=config.mcp,
                     door=config.door, temp_folder=temp_folder, queue_rest_after_s=config.queue_rest_after_s)
    sources.start()
    registry.start()
    print(f"demo hub: {len(specs)} demos ({', '.join(s.name for s in specs)}) on "
          f"http://{config.host}:{config.port}", file=sys.stderr, flush=True)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it with the previous handler:
    # make that an exit, so the cleanup below runs (the default handler would end the process).
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        uvicorn.run(app, host=config.host, port=config.port, log_level="warning")
    finally:
        sources.close()
        registry.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
