"""The web server: /healthz and /metrics beside the Gradio app at /, behind the
door (`demohub.web.gate`): size limits, every prediction through the bounded queue."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
from fastapi import FastAPI
from gradio.routes import App as GradioApp
from fastapi.responses import JSONResponse, Response
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from demohub import heap, tempdir
from demohub.web import lifespans, metrics, outputs, sessions
from demohub.config import DoorSettings
from demohub.web.fair import FairQueue
from demohub.web.gate import UPLOAD_OVERHEAD, BodyLimits, Door, DoorRef, Event, Gate
from demohub.web.live import LivePage
from demohub.web.pacing import QueuePacer, WakeOnRequest
from demohub.web.history import History
from demohub.registry import Registry
from demohub.sources import ModelSources
from demohub.spec import DemoSpec, ModelSource
from demohub.web.ui import build_blocks


def _queue_length(blocks: gr.Blocks) -> int | None:
    queue = getattr(blocks, "_queue", None)
    try:
        return len(queue)
    except TypeError:
        return None


def door_events(blocks: gr.Blocks) -> dict[int, Event]:
    """What the door needs from each Gradio event: its name, its route, its visibility."""
    return {
        index: Event(fn_index=index, api_name=fn.api_name, queued=bool(fn.queue),
                     public=fn.fn is not None and fn.api_visibility == "public")
        for index, fn in blocks.fns.items()
    }


@dataclass(frozen=True)
class ReloadSettings:
    """--reload: where to rediscover the demos, and the folders found broken at start."""

    demos_dir: Path
    only: tuple[str, ...] = ()
    overrides: dict[str, ModelSource] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)


def create_app(specs: list[DemoSpec], registry: Registry, sources: ModelSources,
               queue_size: int = 32, mcp: bool = False, door: DoorSettings = DoorSettings(),
               temp_folder: Path | None = None, queue_rest_after_s: float = 10.0,
               reload: ReloadSettings | None = None, status_every_s: float = 3.0) -> FastAPI:
    """The app. With `reload`, `app.state.live_page` rebuilds its page in place
    (demohub.web.live), and the page redraws itself when it is."""
    # the Status tab's plots: sampled while the app serves (lifespan below); the page refreshes as often
    history = History(registry, period_s=status_every_s)
    blocks = build_blocks(specs, registry, sources, history, broken=reload.broken if reload else None,
                          dev=reload is not None)
    # After every event Gradio rebuilds a pandas summary of its last 10,000 events, for a
    # monitoring page the hub does not serve: ~10 % of the hub process's CPU under load
    # (docs/benchmarks.md, "copies"). Read when the queue is made; an operator's setting wins.
    os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "100")
    # api_open=False: Gradio's own refusal of direct calls to queued events (the gate refuses first).
    blocks.queue(max_size=queue_size, default_concurrency_limit=1, api_open=False)
    pacer = QueuePacer(blocks._queue, quiet_after_s=queue_rest_after_s)
    # Gradio keeps each session's last inputs in its state (for deep links, which the hub
    # does not use); an LRU of `door.sessions` bounds that to sessions x --max-body.
    blocks.state_session_capacity = door.sessions
    ttl = max(1, round(door.temp_ttl_s))
    blocks.delete_cache = (max(1, ttl // 2), ttl)  # Gradio deletes the uploads/outputs it tracks
    docs = door.api_docs
    live = None if reload is None else LivePage(reload.demos_dir, reload.only, reload.overrides, registry,
                                                  sources, history, specs=specs, broken=reload.broken)
    app = FastAPI(title="Demo hub", docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None,
                  openapi_url="/openapi.json" if docs else None,
                  # the run's temp folder (see demohub.tempdir), swept every ttl/2
                  lifespan=lifespans.every(max(1.0, ttl / 2), lambda: tempdir.sweep(temp_folder, ttl),
                                           in_thread=True)(None) if temp_folder else None)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "demos": [s.name for s in (live.specs if live else specs)]})

    app.router.lifespan_context = history.lifespan(app.router.lifespan_context)
    # Trim the heap every TRIM_EVERY_S in a worker thread, for exactly as long as the app serves.
    app.router.lifespan_context = lifespans.every(heap.TRIM_EVERY_S, heap.trim, in_thread=True)(
        app.router.lifespan_context)
    app.router.lifespan_context = pacer.lifespan(app.router.lifespan_context)
    hub_metrics = metrics.HubMetrics(registry, queue_length=lambda: _queue_length(blocks),
                                     queue_poll=lambda: pacer.poll_interval)

    @app.get("/metrics")
    def scrape() -> Response:
        return Response(hub_metrics.exposition(), media_type=metrics.CONTENT_TYPE)

    app = gr.mount_gradio_app(app, blocks, path="/", mcp_server=mcp or None, footer_links=["api"],
                              max_file_size=door.max_file_size, run_history=docs,
                              show_error=False)  # only gr.Error text reaches a client, never an exception's
    # Gradio only checks that input files were uploaded (not arbitrary server paths) once
    # `launch()` has run; mounting never sets the flag, so set it to keep that check on.
    blocks.has_launched = True
    sessions.lighten(blocks.state_holder)  # no deep-link snapshot per session: the door closes that route
    outputs.install()  # two visitors with the same answer share its file: never rewrite it while served
    # Inside the door, so a join it refuses is never counted; Gradio's queue forgets an
    # event id when its job ends, however it ends (demohub.web.fair).
    app.add_middleware(FairQueue, limit=door.per_client_queue, refused=hub_metrics.refused,
                       live=lambda event_id: event_id in blocks._queue.event_ids_to_events)
    def make_door(page: gr.Blocks) -> Door:
        return Door(door_events(page), api_docs=docs, mcp=mcp, dev_reload=reload is not None)

    door_ref = DoorRef(make_door(blocks))
    if live is not None:
        live.door, live.make_door, live.metrics = door_ref, make_door, hub_metrics
        live.app = next(r.app for r in app.routes if isinstance(getattr(r, "app", None), GradioApp))
        blocks.dev_mode = True  # the page listens on dev/reload and redraws itself after a rebuild
        blocks.config = blocks.get_config_file()
        app.state.live_page = live
    app.add_middleware(Gate, door=door_ref,
                       limits=BodyLimits(max_body=door.max_body,
                                         max_upload=door.max_file_size + UPLOAD_OVERHEAD))
    app.add_middleware(WakeOnRequest, pacer=pacer)  # a request refused by the door still wakes it
    # Outermost: the client's address from X-Forwarded-For, only when the connection comes from a
    # proxy named by --forwarded-allow-ips (hub.py turns uvicorn's own copy of it off).
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=door.forwarded_allow_ips)
    return app
