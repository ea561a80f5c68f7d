"""`--memory-budget` holds under a plain mixed stream (issue 32), found and
tested the way an operator would: a real hub, several gradio_client visitors
sending 40 % questions, 30 % cassava, 30 % durian (one photo for every image
request), and the PSS of every process under the hub summed every 0.2 s.

The tolerance, 5 %, covers what the hub cannot see before it happens: a
model's first calls grow its heap past what it held when it loaded (the hub
then measures at once and evicts, within a sweep), and pages that move between
a template and its workers' PSS as they touch them. Each budget is one the
models' measured sizes make meaningful: "two" fits two of the three models
(with templates: one framework family at a time, since the two templates alone
are most of 1000 MB), "all" fits everything loaded at once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from support import PROJECT_ROOT, hub_cache

sys.path.insert(0, str(PROJECT_ROOT / "bench"))
from budget_stream import Report, run  # noqa: E402

MB = 2**20
STREAM_S = 8
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "budget"
ARTIFACTS.mkdir(parents=True, exist_ok=True)
#: (start method, budget name) -> bytes; from the tree's measured PSS (docs/benchmarks.md, issue 32).
#: "all" runs first for each start method: its stream also measures every model's size
BUDGETS = {
    ("template", "all"): 1600 * MB,
    ("template", "two"): 1000 * MB,
    ("spawn", "all"): 2400 * MB,
    ("spawn", "two"): 1500 * MB,
}

#: the "all" stream's report per start method, once per worker process
MEASURED: dict[str, Report] = {}


def stream_measuring_sizes(start_method: str) -> Report:
    """The stream under the budget everything fits in, once per start method in
    this worker: it is the "all" case, and it leaves every model's size measured
    (first calls included) for this start method in the cache, so the tighter
    budget admits models on measured sizes, whatever ran before on the worker (a
    template's forked workers measure smaller than spawned ones: a spawn stream
    admitted on template-measured sizes went 8.4 % over)."""
    if start_method not in MEASURED:
        # seed 2: the four visitors' first requests are cassava, cassava, durian, questions, so every
        # model is loaded and called however slow the machine (seed 0 sent no cassava on a slow run)
        report = run(BUDGETS[start_method, "all"], start_method, seconds=STREAM_S, clients=4,
                     cache_dir=hub_cache(), seed=2, keep_log=ARTIFACTS / f"{start_method}-all.log")
        assert set(report.answers) >= {"questions", "cassava", "durian"}, report.line()
        MEASURED[start_method] = report
    return MEASURED[start_method]


def print_events(log: Path) -> None:
    """The hub's loads, evictions and refusals in order, one short line each."""
    for line in log.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if "event" in event:
            keep = {k: v for k, v in event.items() if k in ("event", "model", "family", "reason", "seconds", "error")}
            print(f"{event.get('ts', 0):.2f}", json.dumps(keep)[:200])


@pytest.mark.parametrize("start_method,fits", list(BUDGETS), ids=[f"{m}-{f}" for m, f in BUDGETS])
def test_the_budget_holds_under_a_mixed_stream(start_method, fits):
    budget = BUDGETS[start_method, fits]
    measured = stream_measuring_sizes(start_method)
    # the demo_hub fixture's cache: placeholders built once for the suite, sizes measured by every run
    report = measured if fits == "all" else run(budget, start_method, seconds=STREAM_S, clients=4,
                                                 cache_dir=hub_cache(),
                                                 keep_log=ARTIFACTS / f"{start_method}-{fits}.log")
    print(report.line())
    print_events(ARTIFACTS / f"{start_method}-{fits}.log")  # shown only if the test fails: what CI keeps
    # sampled at up to 5 Hz while any request ran; a loaded machine read 17 in 8 s (each reading walks
    # every process's page tables), so at least 2 Hz
    assert report.samples >= STREAM_S * 2, report.line()
    assert report.worst_over <= 0.05, f"{report.line()}\nworst sample: {report.worst_parts}"
    assert not report.failures, report.errors
    for demo, loads in report.loads.items():  # no thrash: a model is not reloaded more often than it serves
        assert loads <= max(1, report.answers.get(demo, 0)), report.line()
