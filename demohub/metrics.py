"""Prometheus text exposition of the registry's counters (GET /metrics)."""

from __future__ import annotations

from demohub.registry import Registry, State

_STATES = [s.value for s in State]


def _line(name: str, value: float, **labels: str) -> str:
    if labels:
        inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
        return f"{name}{{{inner}}} {value:g}"
    return f"{name} {value:g}"


def render(registry: Registry, queue_length: int | None = None) -> str:
    statuses = registry.status()
    totals = registry.totals()
    out: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[str]) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(samples)

    per_model = [
        ("demohub_hits_total", "counter", "Requests served by an already loaded model.", lambda s: s.stats.hits),
        ("demohub_misses_total", "counter", "Requests that had to wait for a load.", lambda s: s.stats.misses),
        ("demohub_loads_total", "counter", "Successful model loads.", lambda s: s.stats.loads),
        ("demohub_load_failures_total", "counter", "Failed model loads.", lambda s: s.stats.load_failures),
        ("demohub_load_seconds_total", "counter", "Seconds spent loading models.", lambda s: s.stats.load_seconds_total),
        ("demohub_predictions_total", "counter", "Predictions answered.", lambda s: s.stats.predictions),
        ("demohub_predict_seconds_total", "counter", "Seconds spent inside predict().", lambda s: s.stats.predict_seconds_total),
        ("demohub_errors_total", "counter", "Predictions that raised inside the model.", lambda s: s.stats.errors),
        ("demohub_crashes_total", "counter", "Worker processes that died.", lambda s: s.stats.crashes),
        ("demohub_timeouts_total", "counter", "Predictions that hung past the deadline.", lambda s: s.stats.timeouts),
        ("demohub_model_memory_bytes", "gauge", f"Worker memory ({totals.memory_metric}).", lambda s: s.memory_bytes),
        ("demohub_in_flight", "gauge", "Requests inside the registry (running or waiting).", lambda s: s.in_flight),
    ]
    for name, kind, help_text, get in per_model:
        family(name, kind, help_text, [_line(name, get(s), model=s.name) for s in statuses])
    family("demohub_evictions_total", "counter", "Evictions by reason.", [
        _line("demohub_evictions_total", n, model=s.name, reason=reason)
        for s in statuses for reason, n in sorted(s.stats.evictions.items())
    ])
    family("demohub_model_state", "gauge", "1 for the model's current state.", [
        _line("demohub_model_state", 1 if s.state.value == st else 0, model=s.name, state=st)
        for s in statuses for st in _STATES
    ])
    family("demohub_loaded_models", "gauge", "Models loaded now.", [_line("demohub_loaded_models", totals.loaded)])
    family("demohub_max_models", "gauge", "Most models loaded at once.", [_line("demohub_max_models", totals.max_models)])
    family("demohub_workers_memory_bytes", "gauge", "All workers' memory.", [
        _line("demohub_workers_memory_bytes", totals.workers_memory_bytes)])
    family("demohub_hub_memory_bytes", "gauge", "The hub process's own memory.", [
        _line("demohub_hub_memory_bytes", totals.hub_memory_bytes)])
    if totals.memory_budget is not None:
        family("demohub_memory_budget_bytes", "gauge", "Memory budget for all workers.", [
            _line("demohub_memory_budget_bytes", totals.memory_budget)])
    if queue_length is not None:
        family("demohub_queue_length", "gauge", "Requests waiting in Gradio's queue.", [
            _line("demohub_queue_length", queue_length)])
    return "\n".join(out) + "\n"
