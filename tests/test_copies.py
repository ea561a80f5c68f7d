"""Copies of a busy model (demohub/backends/local/copies.py) under the registry's
policy, with real worker processes of the numpy-only test demos, once per local
start method."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time

import pytest

from demohub.errors import WorkerFailed
from demohub.registry import Limits, Registry, State
from support import gone
from test_registry import make_registry, state

#: every test here fails if a blocking call ran under a coordinating lock (tests/lockcheck.py)
pytestmark = pytest.mark.usefixtures("no_blocking_under_locks")


@pytest.fixture(params=["spawn", "template"])
def build(tmp_path, request):
    """build(limits, copies, alpha={config}, beta={config}, min_call_s, **spec_changes) -> Registry
    whose local backend may run `copies` workers of a busy model (a model gets them
    whatever its call time unless `min_call_s` says otherwise)."""
    registries = []

    def _build(limits=Limits(), copies=2, alpha=None, beta=None, min_call_s=0.0, **spec_changes) -> Registry:
        limits = dataclasses.replace(limits, copy_min_call_s=min_call_s)
        registry = make_registry(tmp_path, request.param, limits, copies, alpha=alpha, beta=beta, **spec_changes)
        registries.append(registry)
        return registry

    yield _build
    for registry in registries:
        registry.close()


def together(registry: Registry, name: str, requests: list[dict]) -> list:
    """Send `requests` to `name` at once; their results (or exceptions) in order."""
    results: list = [None] * len(requests)

    def run(i: int) -> None:
        try:
            results[i] = registry.predict(name, requests[i])
        except Exception as exc:  # noqa: BLE001 - the test reads it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a request hung"
    return results


def wait_for(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def copy_pids(registry: Registry, name: str) -> list[int]:
    handle = registry._slots[name].handle
    return [c.pid for c in list(handle._copies) if c.pid is not None]


def crowd(registry: Registry, name: str = "alpha", seconds: float = 1.5) -> list[int]:
    """Make `name` busy enough to get a second copy; the copies' PIDs."""
    registry.predict(name, {})  # a copy needs one answered call to judge the model by
    together(registry, name, [{"op": "sleep", "seconds": seconds}] * 2)
    assert wait_for(lambda: state(registry, name).copies == 2, 10), "no second copy"
    return copy_pids(registry, name)


def test_a_busy_model_gets_a_second_copy_and_both_answer_at_once(build):
    registry = build(alpha={})
    assert registry.concurrency("alpha") == 4  # Gradio lets in one running and one staged per copy
    first = registry.predict("alpha", {})["pid"]
    results = together(registry, "alpha", [{"op": "sleep", "seconds": 2.0}] * 2 + [{"op": "sleep", "seconds": 1.0}])
    assert not [r for r in results if isinstance(r, Exception)], results
    pids = {r["pid"] for r in results}
    assert first in pids and len(pids) == 2, "the waiting request did not go to a second copy"
    alpha = state(registry, "alpha")
    assert alpha.copies == 2 and alpha.state == State.READY
    assert alpha.stats.loads == 1 and alpha.stats.predictions == 4  # a copy is not a (re)load
    assert "2 copies" in alpha.where


def test_an_extra_copy_takes_its_share_of_the_cores(build):
    registry = build(alpha={})
    first, extra = crowd(registry)
    seen = {r["pid"]: r["omp_threads"] for r in together(registry, "alpha", [{"op": "sleep", "seconds": 1.0}] * 2)}
    assert seen == {first: os.environ.get("OMP_NUM_THREADS"),
                    extra: str(max(1, len(os.sched_getaffinity(0)) // 2))}


def test_an_extra_copy_ends_once_it_is_not_needed(build):
    registry = build(Limits(copy_idle_ttl_s=1.0), alpha={})
    pids = crowd(registry)
    registry.start(interval_s=0.2)
    assert wait_for(lambda: state(registry, "alpha").copies == 1, 10)
    assert wait_for(lambda: gone(pids[1]), 5), "the extra copy's process was left behind"
    assert not gone(pids[0]) and registry.predict("alpha", {})["pid"] == pids[0]


def test_a_copy_that_crashes_costs_only_its_own_request(build):
    registry = build(alpha={})
    crowd(registry)
    results = together(registry, "alpha", [{"op": "sleep", "seconds": 2.0}, {"op": "crash"}])
    survivor, crashed = results
    assert isinstance(crashed, WorkerFailed) and "killed by signal 9" in str(crashed)
    assert not isinstance(survivor, Exception)
    alpha = state(registry, "alpha")
    assert alpha.state == State.READY and alpha.copies == 1 and alpha.stats.crashes == 1
    assert registry.predict("alpha", {"value": 7})["pid"] == survivor["pid"]


def test_a_call_staged_behind_a_crash_goes_to_the_other_copy(build):
    registry = build(alpha={})
    first, extra = crowd(registry)
    # both copies idle: the crash goes to the first, the long call to the other, and the
    # third call, with both copies holding one, is staged on the first, behind the crash
    crashed, survivor, staged = together(registry, "alpha", [
        {"op": "sleep", "seconds": 1.0, "then": "crash"}, {"op": "sleep", "seconds": 2.0},
        {"value": "staged"}])
    assert isinstance(crashed, WorkerFailed) and "killed by signal 9" in str(crashed)
    assert wait_for(lambda: gone(first), 5), "the crash was not on the copy the test meant"
    assert not isinstance(staged, Exception), staged
    assert staged["echo"] == "staged" and staged["pid"] == survivor["pid"] == extra
    alpha = state(registry, "alpha")
    assert (alpha.stats.crashes, alpha.stats.timeouts) == (1, 0)  # the staged call's miss is no fault
    assert alpha.state == State.READY and alpha.copies == 1


def test_a_copy_killed_while_idle_is_dropped_and_the_model_keeps_serving(build):
    registry = build(alpha={})
    pids = crowd(registry)
    os.kill(pids[1], signal.SIGKILL)
    # the sweeper notices; a zombie whose threads are still exiting is not reapable yet
    assert wait_for(lambda: (registry.sweep(), state(registry, "alpha").copies == 1)[1], 5)
    for value in range(4):
        assert registry.predict("alpha", {"value": value})["pid"] == pids[0]
    alpha = state(registry, "alpha")
    assert alpha.state == State.READY and alpha.copies == 1


def test_a_copy_that_times_out_is_ended_and_the_other_answers(build):
    registry = build(alpha={}, predict_timeout_s=2.0)
    pids = crowd(registry, seconds=0.5)
    slow, quick = together(registry, "alpha", [{"op": "sleep", "seconds": 10}, {"op": "sleep", "seconds": 0.5}])
    assert isinstance(slow, WorkerFailed) and "did not finish" in str(slow)
    assert quick["pid"] in pids
    alpha = state(registry, "alpha")
    assert alpha.stats.timeouts == 1 and alpha.stats.crashes == 0 and alpha.copies == 1
    assert wait_for(lambda: sum(not gone(p) for p in pids) == 1, 5)


def test_no_copy_beyond_the_memory_budget(build):
    registry = build(Limits(memory_budget=130 * 2**20, memory_metric="uss"), alpha={"alloc_mb": 80})
    registry.predict("alpha", {})
    results = together(registry, "alpha", [{"op": "sleep", "seconds": 1.0}] * 2)
    assert len({r["pid"] for r in results}) == 1  # they took turns in one process
    assert state(registry, "alpha").copies == 1


def test_extra_copies_go_before_another_model_is_evicted(build):
    registry = build(Limits(memory_budget=300 * 2**20, memory_metric="uss"),
                     alpha={"alloc_mb": 100}, beta={"alloc_mb": 100})
    pids = crowd(registry)
    registry.sweep()  # measures both copies: ~2 x 110 MB
    registry.predict("beta", {})  # three ~110 MB workers do not fit in 300 MB: a copy goes, alpha stays
    alpha = state(registry, "alpha")
    assert alpha.state == State.READY and alpha.copies == 1 and alpha.stats.evictions["memory"] == 0
    assert wait_for(lambda: sum(not gone(p) for p in pids) == 1, 5)


def test_evicting_or_closing_ends_every_copy(build):
    registry = build(alpha={})
    pids = crowd(registry)
    assert registry.evict("alpha")
    assert wait_for(lambda: all(gone(p) for p in pids), 10), "a copy outlived its model's eviction"
    pids = crowd(registry)
    registry.close()
    assert all(gone(p) for p in pids), "a copy outlived the registry"


def test_a_demo_can_keep_its_model_to_one_copy(build):
    # each copy runs one call and takes one more staged behind it
    assert build(alpha={}, copies=1).concurrency("alpha") == 2
    assert build(alpha={}, copies=3).concurrency("alpha") == 6
    registry = build(alpha={}, copies=3, max_copies=1)  # the demo's SPEC says one
    assert registry.concurrency("alpha") == 2
    results = together(registry, "alpha", [{"op": "sleep", "seconds": 0.5}] * 2)
    assert len({r["pid"] for r in results}) == 1


def test_a_model_with_quick_calls_gets_no_copy(build):
    registry = build(alpha={}, min_call_s=0.3)
    for _ in range(3):
        registry.predict("alpha", {"op": "sleep", "seconds": 0.1})  # calls of ~0.1 s
    results = together(registry, "alpha", [{"op": "sleep", "seconds": 0.1}] * 4)
    assert len({r["pid"] for r in results}) == 1 and state(registry, "alpha").copies == 1
    registry.predict("alpha", {"op": "sleep", "seconds": 3.0})  # now ~0.46 s on average
    results = together(registry, "alpha", [{"op": "sleep", "seconds": 1.5}] * 2)
    assert wait_for(lambda: state(registry, "alpha").copies == 2, 10)
