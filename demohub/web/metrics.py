"""GET /metrics with `prometheus_client`: the registry's counters and gauges,
read at scrape time by a custom collector, and histograms of request latency
and model load time per demo (p50/p95 via `histogram_quantile`), fed by the
event bus. Each hub has its own `CollectorRegistry`, so one process (a test)
can hold several hubs."""

from __future__ import annotations

from typing import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from demohub import events
from demohub.web.fair import REASONS as REFUSAL_REASONS
from demohub.registry import ModelStatus, Registry, State

# A `*_created` timestamp beside every counter and histogram doubles the output and
# no dashboard of ours reads it.
disable_created_metrics()

CONTENT_TYPE = CONTENT_TYPE_LATEST
#: Shown at zero before they happen, so rate() and alerts see the series from the start.
EVICTION_REASONS = ("capacity", "memory", "idle")
_STATES = [s.value for s in State]

#: Whole requests, from a warm text model (milliseconds) to a cold image model behind a load.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
#: Starting a worker and loading weights: about a second to a few minutes.
LOAD_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)

_PER_MODEL: list[tuple[str, str, Callable[[ModelStatus], float]]] = [
    ("demohub_hits_total", "Requests served by an already loaded model.", lambda s: s.stats.hits),
    ("demohub_misses_total", "Requests that had to wait for a load.", lambda s: s.stats.misses),
    ("demohub_loads_total", "Successful model loads.", lambda s: s.stats.loads),
    ("demohub_load_failures_total", "Failed model loads.", lambda s: s.stats.load_failures),
    ("demohub_load_seconds_total", "Seconds spent loading models.", lambda s: s.stats.load_seconds_total),
    ("demohub_predictions_total", "Predictions answered.", lambda s: s.stats.predictions),
    ("demohub_predict_seconds_total", "Seconds spent inside predict().", lambda s: s.stats.predict_seconds_total),
    ("demohub_errors_total", "Predictions that raised inside the model.", lambda s: s.stats.errors),
    ("demohub_crashes_total", "Worker processes that died.", lambda s: s.stats.crashes),
    ("demohub_timeouts_total", "Predictions that hung past the deadline.", lambda s: s.stats.timeouts),
]


class RegistryCollector(Collector):
    """The registry's own numbers, read once per scrape (nothing is copied in
    between, so /metrics can never disagree with the Status tab)."""

    def __init__(self, registry: Registry, queue_length: Callable[[], int | None] = lambda: None,
                 queue_poll: Callable[[], float | None] = lambda: None):
        self._registry = registry
        self._queue_length = queue_length
        self._queue_poll = queue_poll

    def describe(self) -> list[Metric]:
        return []  # registering must not collect: a collect reads every process's memory

    def collect(self) -> Iterator[Metric]:
        statuses = self._registry.status()
        totals = self._registry.totals()
        for name, help_text, get in _PER_MODEL:
            family = CounterMetricFamily(name, help_text, labels=["model"])
            for s in statuses:
                family.add_metric([s.name], get(s))
            yield family
        evictions = CounterMetricFamily("demohub_evictions_total", "Evictions by reason.",
                                        labels=["model", "reason"])
        for s in statuses:
            counts = {**dict.fromkeys(EVICTION_REASONS, 0), **s.stats.evictions}
            for reason, n in sorted(counts.items()):
                evictions.add_metric([s.name, reason], n)
        yield evictions

        memory = GaugeMetricFamily("demohub_model_memory_bytes", f"Worker memory ({totals.memory_metric}).",
                                   labels=["model"])
        in_flight = GaugeMetricFamily("demohub_in_flight", "Requests inside the registry (running or waiting).",
                                      labels=["model"])
        state = GaugeMetricFamily("demohub_model_state", "1 for the model's current state.",
                                  labels=["model", "state"])
        replicas = GaugeMetricFamily("demohub_model_replicas",
                                     "Copies of the model serving now (worker processes, or Ray Serve replicas).",
                                     labels=["model"])
        for s in statuses:
            replicas.add_metric([s.name], s.copies)
            memory.add_metric([s.name], s.memory_bytes)
            in_flight.add_metric([s.name], s.in_flight)
            for st in _STATES:
                state.add_metric([s.name, st], 1 if s.state.value == st else 0)
        yield from (memory, in_flight, state, replicas)

        yield GaugeMetricFamily("demohub_loaded_models", "Models loaded now.", value=totals.loaded)
        yield GaugeMetricFamily("demohub_max_models", "Most models loaded at once.", value=totals.max_models)
        yield GaugeMetricFamily("demohub_workers_memory_bytes", "All workers' memory.",
                                value=totals.workers_memory_bytes)
        yield GaugeMetricFamily("demohub_hub_memory_bytes", "The hub process's own memory.",
                                value=totals.hub_memory_bytes)
        shared = GaugeMetricFamily("demohub_shared_process_memory_bytes",
                                   "Memory of processes a backend keeps besides the models (templates, daemons).",
                                   labels=["process"])
        for proc in totals.shared:
            shared.add_metric([proc.name], proc.memory_bytes)
        yield shared
        if totals.memory_budget is not None:
            yield GaugeMetricFamily("demohub_memory_budget_bytes", "Memory budget for all workers.",
                                    value=totals.memory_budget)
        queue_length = self._queue_length()
        if queue_length is not None:
            yield GaugeMetricFamily("demohub_queue_length", "Requests waiting in Gradio's queue.",
                                    value=queue_length)
        poll = self._queue_poll()
        if poll is not None:
            yield GaugeMetricFamily("demohub_queue_poll_seconds", "How often Gradio's queue looks for new "
                                    "work: its own 1 ms, or slower while the hub rests (demohub.web.pacing).",
                                    value=poll)


class HubMetrics:
    """One hub's metrics: its own CollectorRegistry, the registry collector and
    the two histograms. Subscribed to the event bus from construction until
    `close()` (the app's lifetime); events for models this hub does not serve
    are ignored."""

    def __init__(self, registry: Registry, queue_length: Callable[[], int | None] = lambda: None,
                 queue_poll: Callable[[], float | None] = lambda: None):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(RegistryCollector(registry, queue_length, queue_poll))
        self._names = frozenset(registry.names)
        self.request_seconds = Histogram(
            "demohub_request_seconds",
            "Whole requests through the registry, waiting for a load included; outcome=error when the "
            "request raised (refused input, model error, crash, timeout, no capacity).",
            ["model", "outcome"], buckets=REQUEST_BUCKETS, registry=self.registry)
        self.load_seconds = Histogram(
            "demohub_model_load_seconds", "Model loads, from starting the worker to ready.",
            ["model"], buckets=LOAD_BUCKETS, registry=self.registry)
        self.refusals = Counter(
            "demohub_queue_refusals", "Queue joins refused at once, by reason: per_visitor (the visitor "
            "already had --per-client-queue jobs waiting or running), queue_full (Gradio's queue held "
            "--queue-size jobs).", ["reason"], registry=self.registry)
        for reason in REFUSAL_REASONS:
            self.refusals.labels(reason)
        for name in registry.names:  # every series exists from the first scrape, at zero
            self.load_seconds.labels(name)
            for outcome in ("ok", "error"):
                self.request_seconds.labels(name, outcome)
        self._unsubscribe = events.subscribe(self._on_event)

    def demos_changed(self, names: list[str]) -> None:
        """The page was rebuilt with these demos (--reload): series for new ones
        from zero, none kept for a removed one."""
        for name in set(self._names) - set(names):
            self.load_seconds.remove(name)
            for outcome in ("ok", "error"):
                self.request_seconds.remove(name, outcome)
        for name in set(names) - set(self._names):
            self.load_seconds.labels(name)
            for outcome in ("ok", "error"):
                self.request_seconds.labels(name, outcome)
        self._names = frozenset(names)

    def _on_event(self, record: dict) -> None:
        model = record.get("model")
        seconds = record.get("seconds")
        if model not in self._names or not isinstance(seconds, (int, float)):
            return
        if record["event"] == "predict":
            self.request_seconds.labels(model, "ok" if record.get("ok") else "error").observe(seconds)
        elif record["event"] == "load":
            self.load_seconds.labels(model).observe(seconds)

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason).inc()

    def exposition(self) -> bytes:
        """The Prometheus text for one scrape."""
        return generate_latest(self.registry)

    def close(self) -> None:
        self._unsubscribe()
