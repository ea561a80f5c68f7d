"""The Status tab: a totals line and a table to read, and plots to look at —
memory over time per model and per process, stacked, and their total against
the budget when one is set, the hub process beside it, load / evict / crash events on the same time axis, and
request latency with its p50/p95 per demo.

The page's timer refreshes it. The plots are sent only while the tab is open,
and a plot is redrawn only when its axis or its series change; otherwise only
its data is replaced, so nothing flickers and the page is never rebuilt.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import gradio as gr
import pandas as pd

from demohub.web.history import History, MemorySample, Request, TimelineEvent, latency
from demohub.registry import ModelStatus, Registry

#: Counters grouped into two sentences, and each column given its share of the width: with
#: one column per counter the auto layout squeezed their headers to a letter per line at
#: a laptop's 1280 px (issue 31).
STATUS_HEADERS = ["model", "state", "source", "memory", "last load", "requests", "worker", "where", "last error"]
STATUS_WIDTHS = ["8%", "7%", "12%", "7%", "8%", "15%", "17%", "13%", "13%"]

#: The time axis grows through these spans (seconds) up to the history's window.
WINDOWS_S = (60, 120, 300, 600, 900, 1800, 3600)
MODEL_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
SHARED_COLORS = ["#7fb3d5", "#76d7c4", "#bb8fce", "#a3a3a3"]
#: The sum is light: it is drawn first, under the per-process lines it adds up.
FIXED_COLORS = {"all processes": "#444444", "budget": "#d62728", "hub process": "#7f7f7f"}
EVENT_COLORS = {"load": "#2ca02c", "evict": "#ff7f0e", "crash": "#d62728", "load failed": "#9467bd",
                "request failed": "#e377c2"}
QUANTILE_COLORS = {"p50": "#6baed6", "p95": "#08519c"}
X = "seconds from now"
#: The requests plot shows at most this many (the latest); p50/p95 use them all.
MAX_REQUEST_POINTS = 1000
PLOTS = ("memory", "total", "hub", "events", "requests", "latency")


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n else "–"


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def status_rows(statuses: list[ModelStatus]) -> list[list[Any]]:
    rows = []
    for s in statuses:
        st = s.stats
        rows.append([
            s.name, s.state.value, s.source, _mb(s.memory_bytes),
            f"{st.last_load_s:.1f} s" if st.last_load_s else "–",
            " · ".join([_count(st.hits, "hit", "hits"), _count(st.misses, "miss", "misses"),
                        f"{s.in_flight} in flight"]),
            " · ".join([_count(st.loads, "load", "loads"),
                        _count(sum(st.evictions.values()), "eviction", "evictions"),
                        _count(st.crashes, "crash", "crashes"), _count(st.timeouts, "timeout", "timeouts")]),
            s.where or "–", (s.error or "")[:120],
        ])
    return rows


def last_errors_markdown(statuses: list[ModelStatus]) -> str:
    """Each model's last failure with its traceback, folded, for the demo's author
    (the table shows its first line; a visitor's reply never carries it)."""
    parts = []
    for s in statuses:
        if s.traceback:
            body = s.traceback.strip().replace("~~~", "~ ~ ~")
            parts.append(f"<details><summary>{s.name}: last error, {html.escape((s.error or '').strip()[:120])}"
                         f"</summary>\n\n~~~text\n{body}\n~~~\n</details>")
    return "\n\n" + "\n\n".join(parts) if parts else ""


def totals_text(registry: Registry) -> str:
    t = registry.totals()
    budget = _mb(t.memory_budget) if t.memory_budget else "none"
    ttl = f"{t.idle_ttl_s:.0f} s" if t.idle_ttl_s else "never"
    shared = f" · shared processes {_mb(t.shared_memory_bytes)}" if t.shared else ""
    return (
        f"**{t.loaded} / {t.max_models} models loaded** · workers {_mb(t.workers_memory_bytes)} "
        f"({t.memory_metric.upper()}){shared} · hub process {_mb(t.hub_memory_bytes)} · "
        f"memory budget {budget} · idle eviction after {ttl}"
    )


# -- plot data: pure functions of the history and the clock ------------------------------

def window_seconds(age_s: float, cap_s: float) -> float:
    """The shortest span in WINDOWS_S that shows all of the history (at most its window)."""
    for span in WINDOWS_S:
        if span >= cap_s:
            return cap_s
        if span >= age_s:
            return span
    return cap_s


def _frame(rows: list[dict], **dtypes: str) -> pd.DataFrame:
    """Typed even when empty: the plot reads its axis types from the columns' dtypes."""
    return pd.DataFrame(rows, columns=list(dtypes)).astype(dtypes)


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S")


def _keep_changes(rows: list[dict]) -> list[dict]:
    """Drop points inside a flat run (same y as both neighbours): the line looks the same."""
    return [r for i, r in enumerate(rows)
            if i == 0 or i == len(rows) - 1 or rows[i - 1]["MB"] != r["MB"] or rows[i + 1]["MB"] != r["MB"]]


def memory_frame(samples: list[MemorySample], now: float) -> pd.DataFrame:
    """Every sample's memory per model's worker and per shared process (MB): the
    bars of the stacked plot, so each stack is what the workers held together then."""
    rows = []
    for sample in samples:
        parts = [(model, value, sample.pids.get(model)) for model, value in sample.models.items()]
        parts += [(name, value, None) for name, value in sample.shared.items()]
        for name, value, pid in parts:
            if value:
                rows.append({X: round(sample.ts - now, 1), "MB": round(value / 2**20, 1), "process": name,
                             "pid": str(pid) if pid else "", "at": _clock(sample.ts)})
    return _frame(rows, **{X: "float64", "MB": "float64", "process": "str", "pid": "str", "at": "str"})


def total_frame(samples: list[MemorySample], now: float) -> pd.DataFrame:
    """The stack's height over time against the budget line (MB)."""
    series: dict[str, list[dict]] = {"all processes": [], "budget": []}
    for sample in samples:
        for name, value in (("all processes", sum(sample.models.values()) + sum(sample.shared.values())),
                            ("budget", sample.budget)):
            if value or name == "all processes":  # the total is drawn at zero too; the budget only if set
                series[name].append({X: round(sample.ts - now, 1), "MB": round(value / 2**20, 1),
                                     "process": name, "at": _clock(sample.ts)})
    rows = [row for points in series.values() for row in _keep_changes(points)]
    return _frame(rows, **{X: "float64", "MB": "float64", "process": "str", "at": "str"})


def hub_frame(samples: list[MemorySample], now: float) -> pd.DataFrame:
    rows = [{X: round(s.ts - now, 1), "MB": round(s.hub / 2**20, 1), "process": "hub process",
             "at": _clock(s.ts)} for s in samples]
    return _frame(_keep_changes(rows), **{X: "float64", "MB": "float64", "process": "str", "at": "str"})


def _anchors(column: str, series: list[str], at: float, **fields: Any) -> list[dict]:
    """One row per series left of the axis (clipped, never drawn), so every series is in
    the plot's colour scale from its first drawing on."""
    return [{X: at, column: name, "at": "", **fields} for name in series]


def events_frame(timeline: list[TimelineEvent], requests: list[Request], now: float, span: float,
                 models: list[str]) -> pd.DataFrame:
    rows = _anchors("event", list(EVENT_COLORS), -span - 60, model=models[0] if models else "", detail="")
    rows += [{X: round(e.ts - now, 1), "model": e.model, "event": e.kind.replace("_", " "),
             "at": _clock(e.ts), "detail": e.detail} for e in timeline]
    rows += [{X: round(r.ts - now, 1), "model": r.model, "event": "request failed",
              "at": _clock(r.ts), "detail": f"after {r.seconds:.2f} s"} for r in requests if not r.ok]
    rows.sort(key=lambda r: r[X])
    return _frame(rows, **{X: "float64", "model": "str", "event": "str", "at": "str", "detail": "str"})


def requests_frame(requests: list[Request], now: float, span: float, models: list[str]) -> pd.DataFrame:
    """Each successful request's wall time (ms), waiting for a load included; the latest
    MAX_REQUEST_POINTS of them, so a busy hub does not send a visitor megabytes every tick."""
    rows = _anchors("model", models, -span - 60, ms=0.0)
    rows += [{X: round(r.ts - now, 1), "ms": round(r.seconds * 1000, 1), "model": r.model,
              "at": _clock(r.ts)} for r in [r for r in requests if r.ok][-MAX_REQUEST_POINTS:]]
    return _frame(rows, **{X: "float64", "ms": "float64", "model": "str", "at": "str"})


def latency_frame(requests: list[Request]) -> pd.DataFrame:
    rows = []
    for model, (p50, p95, n) in sorted(latency(requests).items()):
        for quantile, value in (("p50", p50), ("p95", p95)):
            rows.append({"demo": f"{model} {quantile}", "ms": round(value * 1000, 1), "quantile": quantile,
                         "requests": n})
    return _frame(rows, demo="str", ms="float64", quantile="str", requests="int64")


def color_map(names: list[str], shared: list[str]) -> dict[str, str]:
    colors = {name: MODEL_COLORS[i % len(MODEL_COLORS)] for i, name in enumerate(names)}
    colors.update({name: SHARED_COLORS[i % len(SHARED_COLORS)] for i, name in enumerate(shared)})
    colors.update(FIXED_COLORS)
    return colors


def _loads(text: str | None) -> dict:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# -- the tab ------------------------------------------------------------------------------

@dataclass
class StatusTab:
    registry: Registry
    history: History
    tab: gr.Tab
    totals: gr.Markdown
    table: gr.Dataframe
    plots: dict[str, gr.components.NativePlot]
    #: per page, hidden (a gr.State would open a heartbeat stream per visitor): is the
    #: Status tab open, and what each plot was last drawn with
    watching: gr.Checkbox
    drawn: gr.Textbox  # JSON text

    def refresh(self, watching: bool, drawn_json: str) -> list[Any]:
        statuses = self.registry.status()
        text, rows = totals_text(self.registry) + last_errors_markdown(statuses), status_rows(statuses)
        if not watching:
            return [text, rows, *(gr.skip() for _ in PLOTS), gr.skip()]
        now = time.time()
        span = window_seconds(now - self.history.started_at, self.history.window_s)
        since = now - span
        samples = [s for s in self.history.memory() if s.ts >= since - self.history.period_s]
        requests = self.history.requests(since)
        frames = {
            "memory": memory_frame(samples, now),
            "total": total_frame(samples, now),
            "hub": hub_frame(samples, now),
            "events": events_frame(self.history.timeline(since), requests, now, span, self.registry.names),
            "requests": requests_frame(requests, now, span, self.registry.names),
            "latency": latency_frame(requests),
        }
        shared = sorted({name for s in samples for name in s.shared})
        colors = color_map(self.registry.names, shared)
        updates, drawn = [], _loads(drawn_json)
        for name in PLOTS:
            frame = frames[name]
            color = self.plots[name].color
            series = sorted(frame[color].unique()) if color else []
            x_lim = [0, None] if name == "latency" else [-span, 0]
            key = [x_lim, series]  # JSON-shaped: it comes back from the page
            before = drawn.get(name)
            before = before if isinstance(before, dict) else {}  # the page sends it back: trust nothing
            if before.get("key") == key and before.get("confirmed"):
                updates.append(frame)  # same axes and series: the data is swapped in place
                continue
            # A redraw takes its colour scale from the data the plot held when the new props
            # arrived, which may be the previous data: redraw once more on the next tick.
            drawn[name] = {"key": key, "confirmed": before.get("key") == key}
            palette = EVENT_COLORS if name == "events" else QUANTILE_COLORS if name == "latency" else colors
            updates.append(gr.update(value=frame, x_lim=x_lim, colors_in_legend=series,
                                     color_map={s: palette[s] for s in series if s in palette}))
        return [text, rows, *updates, json.dumps(drawn)]

    def attach(self, timer: gr.Timer, blocks: gr.Blocks) -> None:
        """Refresh on the page's timer and when the page loads; follow which tab is open
        (through the page's gr.Tabs, the Status tab's parent)."""
        outputs = [self.totals, self.table, *(self.plots[p] for p in PLOTS), self.drawn]
        inputs = [self.watching, self.drawn]
        quiet: dict[str, Any] = dict(api_visibility="private", queue=False, show_progress="hidden")
        timer.tick(self.refresh, inputs, outputs, **quiet)
        blocks.load(self.refresh, inputs, outputs, **quiet)

        def follow(evt: gr.SelectData) -> bool:
            return evt.value == "Status"

        self.tab.parent.select(follow, None, self.watching, **quiet).then(self.refresh, inputs, outputs, **quiet)


def build(registry: Registry, history: History) -> StatusTab:
    """The Status tab's components; call inside the page's gr.Tabs, then `attach`."""
    axis: dict[str, Any] = dict(x=X, x_lim=[-WINDOWS_S[0], 0], tooltip=["at"])
    with gr.Tab("Status", id="status", elem_id="tab-status") as tab:
        totals = gr.Markdown()
        table = gr.Dataframe(headers=STATUS_HEADERS, column_widths=STATUS_WIDTHS, interactive=False, wrap=True)
        with gr.Row():
            with gr.Column(scale=3):
                memory = gr.BarPlot(y="MB", color="process", title="Memory per process, stacked (MB)",
                                    y_lim=[0, None], height=280, elem_id="plot-memory",
                                    **{**axis, "tooltip": ["at", "pid"]})
                total = gr.LinePlot(y="MB", color="process", title="All of them against the budget (MB)",
                                    y_lim=[0, None], height=200, elem_id="plot-total", **axis)
                events_plot = gr.ScatterPlot(y="model", color="event", title="Loads, evictions, crashes",
                                             height=200, elem_id="plot-events", **{**axis, "tooltip": ["at", "detail"]})
                requests = gr.ScatterPlot(y="ms", color="model", title="Requests (ms, waiting for a load included)",
                                          y_lim=[0, None], height=240, elem_id="plot-requests", **axis)
            with gr.Column(scale=1, min_width=260):
                hub = gr.LinePlot(y="MB", color="process", title="Hub process (MB)", y_lim=[0, None],
                                  height=280, elem_id="plot-hub", **axis)
                lat = gr.BarPlot(x="ms", y="demo", color="quantile", title="Latency p50 / p95 (ms)",
                                 x_lim=[0, None], height=460, elem_id="plot-latency", tooltip=["requests"])
        watching = gr.Checkbox(False, visible=False)
        drawn = gr.Textbox("{}", visible=False)
    plots = {"memory": memory, "total": total, "hub": hub, "events": events_plot, "requests": requests, "latency": lat}
    return StatusTab(registry, history, tab, totals, table, plots, watching, drawn)
