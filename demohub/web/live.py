"""The page of a running hub, rebuilt in place (--reload, issue 28).

Gradio's own reload (`gradio app.py`) re-runs the script in the server process
and swaps the new Blocks into the running app (`gradio.utils.BaseReloader.
swap_blocks`): the queue, its jobs and the sessions stay, the events and the
config are the new page's. The hub does the same with its page, and rebuilds
with it everything that was built once from the page: the door's list of public
events (`gate.DoorRef`), the registry's demo slots, the metric labels, and
/healthz's list. An open page redraws itself: with `dev_mode` in its config the
browser listens on Gradio's dev/reload stream and fetches the new config.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import gradio as gr
from gradio.routes import App
from gradio.utils import BaseReloader, reassign_keys

from demohub import events, reload
from demohub.discovery import DemoError, discover_all
from demohub.registry import Registry
from demohub.sources import ModelSources
from demohub.spec import DemoSpec, ModelSource
from demohub.web.gate import Door, DoorRef
from demohub.web.history import History
from demohub.web.metrics import HubMetrics
from demohub.web.ui import build_blocks

#: what mounting (`gr.mount_gradio_app`) and `create_app` set on the Blocks, carried to each rebuilt page
_MOUNTED = ("show_error", "auth", "auth_message", "favicon_path", "root_path", "ssr_mode", "run_history",
            "footer_links", "custom_mount_path", "server_port", "server_name", "enable_monitoring",
            "state_session_capacity", "delete_cache", "dev_mode", "mcp_server", "mcp_server_obj")


class _Swap(BaseReloader):
    """Gradio's own swap of a running app's Blocks."""

    def __init__(self, app: App):
        self._app = app

    @property
    def running_app(self) -> App:
        return self._app

    def swap_blocks(self, demo: gr.Blocks) -> None:
        old = self._app.get_blocks()
        for name in _MOUNTED:
            if hasattr(old, name):
                setattr(demo, name, getattr(old, name))
        for name in ("theme", "css", "css_paths", "js", "head", "head_paths", "server"):
            if not hasattr(old, name):  # read from the old page by Gradio's swap; unset when mounted
                setattr(old, name, None)
        super().swap_blocks(demo)
        reassign_keys(old, demo)
        demo.config = demo.get_config_file()
        # Gradio's reload keeps the queue pointed at the first page (its events keep
        # their indices there); here a rebuilt page may have other events
        demo._queue.blocks = demo
        self._app.change_type = "reload"
        self._app.change_count += 1  # the open pages' dev/reload stream: fetch the new config


class LivePage:
    """Rebuilds the page of one running app. Owned by the app; `rebuild` is
    called from the reload watcher's one thread only, so rebuilds never overlap
    (and no lock is held while it reads files or ends a removed demo's worker)."""

    def __init__(self, demos_dir: Path, only: tuple[str, ...], overrides: dict[str, ModelSource],
                 registry: Registry, sources: ModelSources, history: History, specs: list[DemoSpec],
                 broken: dict[str, str]):
        self.demos_dir = demos_dir
        self.only = only
        self.overrides = overrides
        self.registry = registry
        self.sources = sources
        self.history = history
        # set by create_app once the app around the page exists
        self.door: DoorRef | None = None
        self.make_door: Callable[[gr.Blocks], Door] | None = None
        self.metrics: HubMetrics | None = None
        self.specs = specs
        self.broken = broken
        self.app: App | None = None  # the mounted Gradio app, set once mounted

    def rebuild(self, why: str, show: str | None = None, kit: bool = False) -> None:
        """Rediscover the demos and swap a new page into the running app, showing
        the tab of `show` (the demo just changed) or the first one; `kit`: the
        author's kit changed, import it afresh too."""
        assert self.app and self.door and self.make_door and self.metrics, "create_app sets them"
        started = time.monotonic()
        reload.forget_modules((self.demos_dir.name, *(("demohub.kit",) if kit else ())))
        try:
            specs, broken = discover_all(self.demos_dir, self.only, keep_going=True)
        except DemoError as exc:  # the folder itself is gone or clashes: keep the page as it is
            events.event("reload_error", error=str(exc))
            return
        for spec in specs:
            self.sources.add(spec, self.overrides.get(spec.name))
            self.registry.add(spec)
        gone = [n for n in self.registry.names if n not in {s.name for s in specs} and n not in broken]
        for name in gone:
            self.registry.remove(name)
        tabs = [s.name for s in specs] + sorted(broken)
        selected = show if show in tabs else (tabs[0] if tabs else None)
        blocks = build_blocks(specs, self.registry, self.sources, self.history, broken=broken, dev=True,
                              selected=selected)
        _Swap(self.app).swap_blocks(blocks)
        self.door.current = self.make_door(blocks)
        self.metrics.demos_changed([s.name for s in specs])
        self.history.demos_changed([s.name for s in specs])
        self.specs, self.broken = specs, broken
        events.event("reload", what="page", why=why, demos=[s.name for s in specs], broken=sorted(broken),
                     removed=gone, seconds=time.monotonic() - started)


def apply_changes(changes: list[tuple[str, Path]], live: LivePage, restart: Callable[[str], None]) -> None:
    """One batch of saved files, as the reload watcher hands it over: decided by
    `reload.classify_changes`, carried out here (in the watcher's thread)."""
    changes = reload.settled(changes)
    reload.drop_stale_bytecode(path for _, path in changes)
    known = reload.demo_files(live.demos_dir, live.specs,
                              {s.name: live.sources.local_folder(s.name) for s in live.specs})
    for action in reload.classify_changes(changes, known, live.demos_dir.resolve()):
        if isinstance(action, reload.Restart):
            events.event("reload", what="hub", why=action.why)
            restart(action.why)
            return
        if isinstance(action, reload.ReloadRuntime):
            live.registry.reload(action.name, action.why, warm=True)  # if in use, the saved code loads now
        elif isinstance(action, reload.RebuildPage):
            live.rebuild(action.why, action.show, action.kit)
