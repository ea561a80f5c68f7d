"""Metrics and the Status tab's data: the event bus, the Prometheus collector and
histograms (parsed with prometheus_client's own parser), the history sampler,
the plot frames, and a scrape of a real hub after real traffic."""

from __future__ import annotations

import json
import logging
from collections import Counter
import threading
import time

import numpy as np
import pandas as pd
import pytest
from gradio_client.exceptions import AppError
from prometheus_client.parser import text_string_to_metric_families

from demohub.backends import make_backend
from demohub import events
from demohub.web import metrics, status_tab
from demohub.discovery import discover
from demohub.web.history import History, MemorySample, Request, TimelineEvent, latency, percentile
from demohub.registry import ModelStats, ModelStatus, Registry, State
from demohub.sources import ModelSources
from support import TEST_DEMOS, running_hub

#: The names /metrics had before prometheus_client: dashboards and tests read them.
COUNTERS = ["demohub_hits_total", "demohub_misses_total", "demohub_loads_total", "demohub_load_failures_total",
            "demohub_load_seconds_total", "demohub_predictions_total", "demohub_predict_seconds_total",
            "demohub_errors_total", "demohub_crashes_total", "demohub_timeouts_total", "demohub_evictions_total"]
GAUGES = ["demohub_model_memory_bytes", "demohub_in_flight", "demohub_model_state", "demohub_loaded_models",
          "demohub_max_models", "demohub_workers_memory_bytes", "demohub_hub_memory_bytes"]


@pytest.fixture
def registry(tmp_path):
    specs = discover(TEST_DEMOS)
    reg = Registry(specs, ModelSources(specs, tmp_path / "models", tmp_path / "placeholders", {}),
                   backend=make_backend("spawn"))
    yield reg
    reg.close()


def scrape(text: str) -> dict[str, dict]:
    """{sample name: {frozenset(labels): value}} from Prometheus text, with the type of each family."""
    out: dict[str, dict] = {"__types__": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out["__types__"][sample.name] = family.type
            out.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return out


def value(parsed: dict, name: str, **labels: str) -> float:
    return parsed[name][frozenset(labels.items())]


def histogram_quantile(parsed: dict, name: str, q: float, **labels: str) -> float:
    """PromQL's histogram_quantile over one series' buckets (linear within a bucket)."""
    buckets = sorted(
        (float(dict(key)["le"]), count) for key, count in parsed[f"{name}_bucket"].items()
        if all(dict(key).get(k) == v for k, v in labels.items()))
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / max(count - lower_count, 1e-9)
        lower_bound, lower_count = bound, count
    raise AssertionError("no bucket reached the rank")


# -- the event bus -----------------------------------------------------------------------

def test_subscribers_hear_every_event_and_quiet_events_stay_out_of_the_log(caplog):
    heard: list[dict] = []
    unsubscribe = events.subscribe(heard.append)
    try:
        with caplog.at_level(logging.INFO, logger="demohub"):
            events.event("load", "alpha", seconds=1.23456, pid=7)
            events.event("predict", "alpha", quiet=True, seconds=0.5, ok=True)
    finally:
        unsubscribe()
    events.event("load", "alpha", seconds=2.0)  # after unsubscribing: not heard
    assert [(r["event"], r["model"]) for r in heard] == [("load", "alpha"), ("predict", "alpha")]
    assert heard[0]["seconds"] == 1.2346 and heard[0]["pid"] == 7 and "ts" in heard[0]
    logged = [json.loads(r.getMessage()) for r in caplog.records]
    assert [r["event"] for r in logged] == ["load"]
    assert "quiet" not in heard[1]


def test_a_broken_subscriber_neither_raises_nor_starves_the_others(caplog):
    heard: list[dict] = []

    def broken(record: dict) -> None:
        record["event"] = "tampered"
        raise RuntimeError("observer bug")

    undo_broken = events.subscribe(broken)
    undo_heard = events.subscribe(heard.append)
    try:
        with caplog.at_level(logging.INFO, logger="demohub"):
            events.event("crash", "beta", pid=1)  # must not raise
    finally:
        undo_broken()
        undo_heard()
    assert heard and heard[0]["event"] == "crash"  # each subscriber gets its own copy
    errors = [json.loads(r.getMessage()) for r in caplog.records if "subscriber_error" in r.getMessage()]
    assert errors and "observer bug" in errors[0]["error"]


# -- /metrics from the registry and the bus -----------------------------------------------

def test_histograms_count_requests_and_loads_per_demo_from_the_bus(registry):
    hub = metrics.HubMetrics(registry, queue_length=lambda: 3)
    try:
        for seconds in (0.002, 0.02, 0.2, 2.0):
            events.event("predict", "alpha", quiet=True, seconds=seconds, ok=True)
        events.event("predict", "beta", quiet=True, seconds=0.3, ok=False)
        events.event("load", "alpha", seconds=4.0, memory_mb=10.0, pid=1)
        events.event("predict", "zeta", quiet=True, seconds=1.0, ok=True)  # not this hub's model
        events.event("predict", "alpha", quiet=True, ok=True)  # no seconds: ignored, not a crash
        parsed = scrape(hub.exposition().decode())
    finally:
        hub.close()
    assert value(parsed, "demohub_request_seconds_count", model="alpha", outcome="ok") == 4
    assert value(parsed, "demohub_request_seconds_sum", model="alpha", outcome="ok") == pytest.approx(2.222)
    assert value(parsed, "demohub_request_seconds_bucket", model="alpha", outcome="ok", le="0.025") == 2
    assert value(parsed, "demohub_request_seconds_count", model="beta", outcome="error") == 1
    assert value(parsed, "demohub_request_seconds_count", model="beta", outcome="ok") == 0
    assert value(parsed, "demohub_model_load_seconds_count", model="alpha") == 1
    assert value(parsed, "demohub_model_load_seconds_sum", model="alpha") == 4.0
    assert value(parsed, "demohub_model_load_seconds_count", model="beta") == 0
    assert not any("zeta" in str(k) for k in parsed["demohub_request_seconds_count"])
    assert parsed["__types__"]["demohub_request_seconds_bucket"] == "histogram"
    assert value(parsed, "demohub_queue_length") == 3
    assert not any(name.endswith("_created") for name in parsed)


def test_the_collector_keeps_todays_names_and_types(registry):
    hub = metrics.HubMetrics(registry)
    try:
        parsed = scrape(hub.exposition().decode())
    finally:
        hub.close()
    for name in COUNTERS:
        assert parsed["__types__"][name] == "counter", name
    for name in GAUGES:
        assert parsed["__types__"][name] == "gauge", name
    assert value(parsed, "demohub_loads_total", model="alpha") == 0
    assert value(parsed, "demohub_model_state", model="beta", state="not loaded") == 1
    assert value(parsed, "demohub_hub_memory_bytes") > 10 * 2**20
    assert "demohub_queue_length" not in parsed  # unknown queue: no made-up zero
    assert "demohub_memory_budget_bytes" not in parsed  # no budget set


def test_two_hubs_in_one_process_have_their_own_registries(registry):
    first, second = metrics.HubMetrics(registry), metrics.HubMetrics(registry)
    try:
        events.event("predict", "alpha", quiet=True, seconds=0.1, ok=True)
        first.close()
        events.event("predict", "alpha", quiet=True, seconds=0.1, ok=True)
        a, b = scrape(first.exposition().decode()), scrape(second.exposition().decode())
    finally:
        second.close()
    assert value(a, "demohub_request_seconds_count", model="alpha", outcome="ok") == 1  # closed: stopped counting
    assert value(b, "demohub_request_seconds_count", model="alpha", outcome="ok") == 2


# -- the history behind the plots ----------------------------------------------------------

def test_history_keeps_events_requests_and_samples_in_bounded_buffers(registry):
    history = History(registry, period_s=1.0, window_s=5.0, max_events=3, max_requests=4)
    try:
        for i in range(5):
            events.event("load", "alpha", seconds=1.0 + i, memory_mb=10.0, pid=100 + i)
        events.event("evict", "alpha", reason="memory", pid=104)
        events.event("download", "alpha", seconds=3.0)  # not a timeline event
        for i in range(6):
            events.event("predict", "beta", quiet=True, seconds=0.1 * (i + 1), ok=i != 5)
        for _ in range(10):
            history.sample()
    finally:
        history.stop()
    events.event("crash", "alpha", pid=1)  # after stop: not heard
    timeline = history.timeline()
    assert len(timeline) == 3 and [e.kind for e in timeline] == ["load", "load", "evict"]
    assert "evicted (memory)" in timeline[-1].detail
    requests = history.requests()
    assert [round(r.seconds, 1) for r in requests] == [0.3, 0.4, 0.5, 0.6] and not requests[-1].ok
    samples = history.memory()
    assert len(samples) == 6  # window / period + 1
    assert samples[-1].models == {"alpha": 0, "beta": 0} and samples[-1].hub > 10 * 2**20


def test_history_sampler_runs_with_its_lifespan_and_stops_by_a_deadline(registry):
    import asyncio
    import contextlib

    history = History(registry, period_s=0.05)
    seen_during: list[int] = []

    @contextlib.asynccontextmanager
    async def inner(app):
        yield {"inner": True}

    async def serve() -> None:
        async with history.lifespan(inner)(None) as state:
            assert state == {"inner": True}
            deadline = time.monotonic() + 10
            while len(history.memory()) < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            seen_during.append(len(history.memory()))

    asyncio.run(serve())
    assert seen_during[0] >= 3
    assert not any(t.name == "status-history" for t in threading.enumerate())
    count = len(history.memory())
    time.sleep(0.3)
    assert len(history.memory()) == count  # stopped: no more samples


def test_latency_quantiles_match_numpy():
    rng = np.random.default_rng(0)
    values = list(rng.exponential(0.2, size=101))
    assert percentile(values, 50) == pytest.approx(np.percentile(values, 50))
    assert percentile(values, 95) == pytest.approx(np.percentile(values, 95))
    requests = [Request(0.0, "alpha", v, True) for v in values] + [Request(0.0, "alpha", 99.0, False)]
    p50, p95, n = latency(requests)["alpha"]
    assert n == 101 and p95 == pytest.approx(np.percentile(values, 95))  # failures left out
    with pytest.raises(ValueError):
        percentile([], 50)


# -- the table -------------------------------------------------------------------------------

@pytest.mark.parametrize("stats, in_flight, requests, worker", [
    (ModelStats(), 0, "0 hits · 0 misses · 0 in flight", "0 loads · 0 evictions · 0 crashes · 0 timeouts"),
    (ModelStats(hits=1, misses=1, loads=1, crashes=1, timeouts=1, evictions=Counter(idle=1), last_load_s=2.25),
     2, "1 hit · 1 miss · 2 in flight", "1 load · 1 eviction · 1 crash · 1 timeout"),
    (ModelStats(hits=40, misses=3, loads=3, evictions=Counter(idle=1, memory=1)),
     0, "40 hits · 3 misses · 0 in flight", "3 loads · 2 evictions · 0 crashes · 0 timeouts"),
])
def test_the_status_table_groups_the_counters_under_headers_a_laptop_shows_whole(stats, in_flight, requests, worker):
    status = ModelStatus(name="alpha", title="Alpha", state=State.READY, source="placeholder", placeholder=True,
                         memory_bytes=11 * 2**20, in_flight=in_flight, idle_s=None, error="x" * 300,
                         download_fraction=None, stats=stats, where="pid 7")
    [row] = status_tab.status_rows([status])
    assert len(row) == len(status_tab.STATUS_HEADERS) == len(status_tab.STATUS_WIDTHS)
    assert sum(float(w.rstrip("%")) for w in status_tab.STATUS_WIDTHS) == 100
    named = dict(zip(status_tab.STATUS_HEADERS, row))
    assert (named["requests"], named["worker"]) == (requests, worker)
    assert named["last load"] == ("2.2 s" if stats.last_load_s else "–")
    assert named["memory"] == "11 MB" and named["where"] == "pid 7" and len(named["last error"]) == 120


# -- the plot frames -------------------------------------------------------------------------

def test_memory_frame_stacks_every_sample_and_the_total_runs_against_the_budget():
    now = 1000.0
    samples = [MemorySample(ts=now - 30 + 3 * i, models={"alpha": (100 if 3 <= i < 7 else 0) * 2**20, "beta": 0},
                            pids={"alpha": 42} if 3 <= i < 7 else {}, shared={"template torch (pid 9)": 50 * 2**20},
                            hub=120 * 2**20, budget=300 * 2**20) for i in range(10)]
    frame = status_tab.memory_frame(samples, now)
    assert set(frame["process"]) == {"alpha", "template torch (pid 9)"}  # a model at zero has no bar
    alpha = frame[frame["process"] == "alpha"]
    assert list(alpha["MB"]) == [100] * 4 and set(alpha["pid"]) == {"42"}
    assert len(frame[frame["process"] == "template torch (pid 9)"]) == 10  # one bar a sample: they stack
    stacks = frame.groupby("seconds from now")["MB"].sum()
    assert list(stacks) == [50, 50, 50, 150, 150, 150, 150, 50, 50, 50]
    assert frame["seconds from now"].between(-30, 0).all()
    total = status_tab.total_frame(samples, now)
    assert set(total["process"]) == {"all processes", "budget"}
    assert list(total[total["process"] == "all processes"]["MB"]) == [50, 50, 150, 150, 50, 50]  # flat runs: ends
    assert list(total[total["process"] == "budget"]["MB"]) == [300, 300]
    hub = status_tab.hub_frame(samples, now)
    assert list(hub["MB"]) == [120, 120]


def test_events_and_request_frames_anchor_every_series_off_the_axis():
    now = 1000.0
    timeline = [TimelineEvent(now - 20, "load", "alpha", "loaded"), TimelineEvent(now - 5, "load_failed", "beta", "x")]
    requests = [Request(now - 10, "alpha", 0.25, True), Request(now - 4, "beta", 1.0, False)]
    frame = status_tab.events_frame(timeline, requests, now, 60, ["alpha", "beta"])
    shown = frame[frame["seconds from now"] >= -60]
    assert list(shown["event"]) == ["load", "load failed", "request failed"]
    assert set(frame["event"]) == set(status_tab.EVENT_COLORS)  # anchors: every colour known up front
    assert (frame[frame["seconds from now"] < -60]["at"] == "").all()
    req = status_tab.requests_frame(requests, now, 60, ["alpha", "beta"])
    shown = req[req["seconds from now"] >= -60]
    assert list(shown["ms"]) == [250.0] and set(req["model"]) == {"alpha", "beta"}
    many = [Request(now - 50 + i * 0.01, "alpha", 0.1, True) for i in range(status_tab.MAX_REQUEST_POINTS + 500)]
    req = status_tab.requests_frame(many, now, 60, ["alpha"])
    assert len(req) == status_tab.MAX_REQUEST_POINTS + 1  # the latest, plus the anchor
    assert req["seconds from now"].max() == round(many[-1].ts - now, 1)
    bars = status_tab.latency_frame(requests)
    assert list(bars["demo"]) == ["alpha p50", "alpha p95"] and list(bars["ms"]) == [250.0, 250.0]


def test_the_time_axis_grows_in_steps_up_to_the_window():
    assert status_tab.window_seconds(10, 900) == 60
    assert status_tab.window_seconds(61, 900) == 120
    assert status_tab.window_seconds(400, 900) == 600
    assert status_tab.window_seconds(5000, 900) == 900


# -- a real hub ------------------------------------------------------------------------------

def test_scrape_of_a_real_hub_after_traffic(tmp_path):
    models = tmp_path / "models"
    for name, config in (("alpha", {"load_sleep": 3.0}), ("beta", {})):
        (models / name).mkdir(parents=True)
        (models / name / "config.json").write_text(json.dumps({"trained": True, **config}))
    with running_hub("--demos-dir", str(TEST_DEMOS), "--models-dir", str(models)) as hub:
        client = hub.client()
        for i in range(5):  # the first waits for the 3 s load, the other four are warm
            assert client.predict(json.dumps({"value": i}), api_name="/alpha")["echo"] == i
        with pytest.raises(AppError):
            client.predict('{"op": "error"}', api_name="/beta")
        import urllib.request

        with urllib.request.urlopen(hub.url + "metrics", timeout=30) as resp:
            content_type = resp.headers["Content-Type"]
            parsed = scrape(resp.read().decode())
    assert content_type.startswith("text/plain") and "version=" in content_type
    for name in COUNTERS:
        assert parsed["__types__"][name] == "counter", name
    assert value(parsed, "demohub_loads_total", model="alpha") == 1
    assert value(parsed, "demohub_model_state", model="alpha", state="ready") == 1
    assert value(parsed, "demohub_model_memory_bytes", model="alpha") > 0
    assert value(parsed, "demohub_model_replicas", model="alpha") == 1  # one worker process
    assert value(parsed, "demohub_queue_length") == 0
    # one observation per request, and they agree with the registry's own counters
    ok = value(parsed, "demohub_request_seconds_count", model="alpha", outcome="ok")
    assert ok == 5 == value(parsed, "demohub_hits_total", model="alpha") + value(
        parsed, "demohub_misses_total", model="alpha")
    assert value(parsed, "demohub_request_seconds_count", model="beta", outcome="error") == 1
    assert value(parsed, "demohub_model_load_seconds_count", model="alpha") == 1
    assert value(parsed, "demohub_model_load_seconds_sum", model="alpha") >= 3.0
    # p50 / p95 straight from the buckets: four warm requests and one that waited for the load
    assert histogram_quantile(parsed, "demohub_request_seconds", 0.5, model="alpha", outcome="ok") < 2.5
    assert histogram_quantile(parsed, "demohub_request_seconds", 0.95, model="alpha", outcome="ok") >= 2.5


def test_a_plot_is_redrawn_only_when_its_axis_or_series_change(registry):
    """The Status tab's refresh: nothing for the plots while the tab is closed; props (a
    redraw) on the first tick and once more to confirm; then only data; junk from the page
    costs a redraw, never an error."""
    import gradio as gr

    history = History(registry)
    try:
        with gr.Blocks(), gr.Tabs():
            tab = status_tab.build(registry, history)
        history.sample()
        closed = tab.refresh(False, "{}")
        assert "models loaded" in closed[0] and len(closed[1]) == 2
        assert all(isinstance(u, dict) and u.get("__type__") == "update" and len(u) == 1 for u in closed[2:])

        def plots(out):
            return dict(zip(status_tab.PLOTS, out[2:-1]))

        first = tab.refresh(True, "{}")
        assert all(isinstance(u, dict) and u["x_lim"] for u in plots(first).values())
        assert plots(first)["memory"]["colors_in_legend"] == []  # nothing loaded: no bar yet
        assert plots(first)["total"]["colors_in_legend"] == ["all processes"]  # at zero; no budget set
        second = tab.refresh(True, first[-1])
        assert all(isinstance(u, dict) for u in plots(second).values())  # the confirming redraw
        third = tab.refresh(True, second[-1])
        assert all(isinstance(u, pd.DataFrame) for u in plots(third).values())  # data only

        events.event("load", "alpha", seconds=1.0, memory_mb=5.0, pid=9)
        events.event("predict", "alpha", quiet=True, seconds=0.5, ok=True)
        fourth = plots(tab.refresh(True, third[-1]))
        assert isinstance(fourth["latency"], dict)  # new series (p50, p95): redraw
        assert isinstance(fourth["events"], pd.DataFrame)  # every event kind was anchored: data only
        assert "loaded in 1.0 s" in " ".join(fourth["events"]["detail"])

        for junk in ("not json", "[1, 2]", '{"memory": "x", "hub": [1]}'):
            assert all(isinstance(u, dict) for u in plots(tab.refresh(True, junk)).values())
    finally:
        history.stop()
