"""The page: one tab per demo plus a status tab. The UI only asks the registry;
it never touches a model."""

from __future__ import annotations

import importlib
import traceback
from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.utils import get_function_description

from demohub import events
from demohub.web import status_tab
from demohub.errors import HubError, InputError
from demohub.kit.verdict import PLACEHOLDER_BANNER
from demohub.web.history import History
from demohub.loadtimes import LastLoad
from demohub.web.refusals import HubBlocks, refusal
from demohub.registry import ModelStatus, Registry, State
from demohub.sources import ModelSources
from demohub.spec import DemoSpec


@dataclass
class TabContext:
    """What a demo's tab may use: its spec and a way to run predictions."""

    spec: DemoSpec
    registry: Registry

    @property
    def api_name(self) -> str:
        return self.spec.api_name

    @property
    def concurrency_limit(self) -> int:
        """What the model can really run at once, so waiting happens in Gradio's
        queue (where clients see their position), not in a lock."""
        return self.registry.concurrency(self.spec.name)

    def predict(self, request: Any, progress: gr.Progress | None = None) -> Any:
        """Run one request through the worker; errors become `gr.Error`s."""

        def report(fraction: float | None, desc: str) -> None:
            if progress is not None:
                progress(fraction, desc=desc)

        try:
            return self.registry.predict(self.spec.name, request, progress=report)
        except InputError as exc:
            raise refusal(str(exc), self.spec.name) from None
        except HubError as exc:
            # Written for the visitor and logged by the registry: no hub traceback adds anything.
            raise gr.Error(str(exc), title=f"{self.spec.title}", print_exception=False) from None

    def input_error(self, message: str) -> gr.Error:
        """For tabs that validate before calling the worker: one log line, no traceback."""
        return refusal(message, self.spec.name)


def model_line(status: ModelStatus, last: LastLoad | None = None, dev: bool = False) -> str:
    """The one-line model status shown at the top of a demo's tab (with --reload,
    a failure's traceback under it: the author's own machine)."""
    state = status.state
    if state == State.FAILED and status.error:
        retry = f" Next try in {status.retry_in_s:.0f} s." if status.retry_in_s else ""
        if dev and status.traceback:
            return f"**Model unavailable.** {status.error}\n\n{_code(status.traceback)}\n\nSave a fix: it reloads."
        return f"**Model unavailable.** {status.error}{retry}"
    if state == State.DOWNLOADING:
        pct = f" ({status.download_fraction:.0%})" if status.download_fraction is not None else ""
        return f"Downloading the model{pct}…"
    if state == State.WAITING:
        return "Waiting for room: the hub loads this model as soon as another one is free…"
    if state == State.LOADING:
        return "Loading the model…"
    if state == State.READY:
        note = f" Loaded in {status.stats.last_load_s:.1f} s." if status.stats.last_load_s else ""
        banner = f"\n\n{PLACEHOLDER_BANNER}" if status.placeholder else ""
        return f"Model ready (from {status.source}).{note}{banner}"
    if last is not None and last.seconds > 0:  # measured by an earlier run (demohub/loadtimes.py)
        return f"Model not loaded yet: the first prediction loads it (its last load took {last.seconds:.1f} s)."
    return "Model not loaded yet: the first prediction loads it."


def _name_endpoints(blocks: gr.Blocks, specs: list[DemoSpec]) -> None:
    """Each demo's public endpoint is described by its spec, and its handler is
    named after the demo: MCP clients see a tool `cassava`, not `diagnose`."""
    by_api_name = {spec.api_name: spec for spec in specs}
    for block_fn in blocks.fns.values():
        spec = by_api_name.get(block_fn.api_name)
        if spec is None or block_fn.fn is None:
            continue
        block_fn.fn.__name__ = spec.name
        if not block_fn.api_description:  # what the outputs are, from the handler's docstring
            _, _, returns = get_function_description(block_fn.fn)
            block_fn.api_description = spec.description + (f" Returns: {'; '.join(returns)}." if returns else "")


def _code(text: str) -> str:
    return "```text\n" + text.replace("```", "` ` `") + "\n```"


def build_blocks(specs: list[DemoSpec], registry: Registry, sources: ModelSources,
                 history: History, broken: dict[str, str] | None = None, dev: bool = False,
                 selected: str | None = None) -> gr.Blocks:
    """The page. With --reload (`dev`), a demo whose folder or tab is broken shows
    its traceback on its tab and on the Status tab; `broken` names the folders
    discovery could not read (demohub.discovery.discover_all). `selected`: the tab
    a rebuilt page shows (an open page redrawn in place shows the selected tab
    blank unless its config selects one: gradio-app/gradio#8641)."""
    broken = dict(broken or {})
    now = {s.name: s for s in registry.status()}  # each model line starts true (a rebuilt page has no load yet)
    with HubBlocks(title="Demo hub") as blocks:
        gr.Markdown("# Demo hub\nSeveral trained models side by side. Each model loads on first use "
                    "in its own process.")
        model_lines: list[gr.Markdown] = []
        with gr.Tabs(selected=selected):
            for spec in specs:
                with gr.Tab(spec.title, id=spec.name, elem_id=f"tab-{spec.name}"):
                    gr.Markdown(f"## {spec.title}\n{spec.description}")
                    first = (model_line(now[spec.name], registry.measured.get(spec.name), dev)
                             if spec.name in now else "")
                    model_lines.append(gr.Markdown(first, elem_classes=["model-status"]))
                    try:
                        importlib.import_module(spec.tab).build(TabContext(spec=spec, registry=registry))
                    except Exception as exc:  # noqa: BLE001 - one broken tab must not stop the hub
                        events.event("tab_failed", spec.name, error=f"{type(exc).__name__}: {exc}")
                        gr.Markdown(f"**This demo's page could not be built:** `{type(exc).__name__}: {exc}`")
                        if dev:
                            broken[spec.name] = traceback.format_exc()
                            gr.Markdown(_code(broken[spec.name]))
            for name in sorted(set(broken) - {s.name for s in specs}):
                with gr.Tab(name, id=name, elem_id=f"tab-{name}"):
                    gr.Markdown(f"## {name}\n**This demo could not be loaded.** Save a fix: the page reloads.")
                    gr.Markdown(_code(broken[name]))
            status = status_tab.build(registry, history)
            if broken:
                with status.tab:
                    gr.Markdown("### Broken demos\n" + "\n\n".join(
                        f"**{name}**\n\n{_code(trace)}" for name, trace in sorted(broken.items())))

        def refresh():
            by_name = {s.name: s for s in registry.status()}
            lines = [model_line(by_name[spec.name], registry.measured.get(spec.name), dev)
                     if spec.name in by_name else "" for spec in specs]
            return lines[0] if len(lines) == 1 else lines  # one output (--only one demo) takes a value, not a list

        _name_endpoints(blocks, specs)
        outputs = model_lines
        timer = gr.Timer(history.period_s)
        status.attach(timer, blocks)
        timer.tick(refresh, None, outputs, api_visibility="private", queue=False, show_progress="hidden")
        blocks.load(refresh, None, outputs, api_visibility="private", queue=False, show_progress="hidden")
    return blocks
