"""Start the demo hub: `python hub.py --help` lists the settings."""

from __future__ import annotations

import importlib.util
import logging
import sys

import uvicorn

from demohub.app import create_app
from demohub.config import load_config
from demohub.discovery import discover
from demohub.registry import Registry
from demohub.sources import ModelSources


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    config = load_config(argv)
    if config.mcp and importlib.util.find_spec("mcp") is None:
        print('error: --mcp needs the MCP extra: .venv/bin/pip install "gradio[mcp]==6.31.0" '
              "(kept out of requirements.txt: it pins an older pydantic)", file=sys.stderr)
        return 2
    specs = discover(config.demos_dir, config.only)
    sources = ModelSources(specs, config.models_dir, config.placeholder_dir, config.models)
    backend = None  # the registry's default: a process per model
    if config.backend != "spawn":
        from demohub.backends import make_backend

        backend = make_backend(config.backend, **config.backend_options)
    registry = Registry(specs, sources, config.limits, backend=backend)
    app = create_app(specs, registry, sources, queue_size=config.queue_size, mcp=config.mcp)
    sources.start()
    registry.start()
    print(f"demo hub: {len(specs)} demos ({', '.join(s.name for s in specs)}) on "
          f"http://{config.host}:{config.port}", file=sys.stderr, flush=True)
    try:
        uvicorn.run(app, host=config.host, port=config.port, log_level="warning")
    finally:
        sources.close()
        registry.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
