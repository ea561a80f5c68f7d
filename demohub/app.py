"""The web server: /healthz and /metrics beside the Gradio app at /."""

from __future__ import annotations

import gradio as gr
from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse

from demohub import metrics
from demohub.registry import Registry
from demohub.sources import ModelSources
from demohub.spec import DemoSpec
from demohub.ui import build_blocks


def _queue_length(blocks: gr.Blocks) -> int | None:
    queue = getattr(blocks, "_queue", None)
    try:
        return len(queue)
    except TypeError:
        return None


def create_app(specs: list[DemoSpec], registry: Registry, sources: ModelSources,
               queue_size: int = 32, mcp: bool = False) -> FastAPI:
    blocks = build_blocks(specs, registry, sources)
    blocks.queue(max_size=queue_size, default_concurrency_limit=1)
    app = FastAPI(title="Demo hub")

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "demos": [s.name for s in specs]})

    @app.get("/metrics")
    def scrape() -> PlainTextResponse:
        return PlainTextResponse(
            metrics.render(registry, _queue_length(blocks)),
            media_type="text/plain; version=0.0.4; charset=utf-8",
        )

    app = gr.mount_gradio_app(app, blocks, path="/", mcp_server=mcp or None, footer_links=["api"])
    # Gradio only checks that input files were uploaded (not arbitrary server paths) once
    # `launch()` has run; mounting never sets the flag, so set it to keep that check on.
    blocks.has_launched = True
    return app
