"""The registry with real worker processes running the numpy-only test demos."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from demohub.backends import make_backend
from demohub import policy, tempdir
from demohub.backends.local.spawn import SpawnBackend
from demohub.discovery import discover
from demohub.errors import (HubAtCapacity, InputError, ModelError, ModelUnavailable,
                            WorkerFailed, WorkerTimeout)
from demohub.registry import Limits, Registry, State
from demohub.sources import ModelSources
from demohub.spec import ModelSource
from registries import make_model, make_registry, state, wait_in_flight
from support import TEST_DEMOS, gone

#: every test here fails if a blocking call ran under a coordinating lock (tests/lockcheck.py)
pytestmark = pytest.mark.usefixtures("no_blocking_under_locks")


@pytest.fixture(params=["spawn", "template"])
def build(tmp_path, request):
    """build(limits, alpha={config}, beta={config}, **spec_changes) -> Registry, once
    with each start method: a fresh interpreter per worker, and workers forked
    from a template (the test demos are numpy-only: the "none" family)."""
    registries = []

    def _build(limits=Limits(), alpha=None, beta=None, **spec_changes) -> Registry:
        registry = make_registry(tmp_path, request.param, limits, alpha=alpha, beta=beta, **spec_changes)
        registries.append(registry)
        return registry

    yield _build
    for registry in registries:
        registry.close()


def test_models_load_lazily_and_stay_warm(build):
    registry = build(alpha={}, beta={})
    assert registry.worker_pids() == {}
    assert state(registry, "alpha").state == State.NOT_LOADED
    first = registry.predict("alpha", {"value": 1})
    second = registry.predict("alpha", {"value": 2})
    assert (first["echo"], second["echo"]) == (1, 2)
    assert first["pid"] == second["pid"] == registry.worker_pids()["alpha"]
    assert first["pid"] != os.getpid()
    stats = state(registry, "alpha").stats
    assert (stats.loads, stats.misses, stats.hits, stats.predictions) == (1, 1, 1, 2)
    assert state(registry, "beta").state == State.NOT_LOADED


def test_concurrent_first_requests_share_one_load(build):
    registry = build(alpha={"load_sleep": 1.0})
    results, errors = [], []

    def call(i):
        try:
            results.append(registry.predict("alpha", {"value": i}))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({r["pid"] for r in results}) == 1
    stats = state(registry, "alpha").stats
    assert stats.loads == 1
    assert stats.misses == 6


def test_count_bound_evicts_least_recently_used(build):
    registry = build(Limits(max_models=1), alpha={}, beta={})
    alpha_pid = registry.predict("alpha", {})["pid"]
    registry.predict("beta", {})
    assert not psutil.pid_exists(alpha_pid) or psutil.Process(alpha_pid).status() == psutil.STATUS_ZOMBIE
    assert set(registry.worker_pids()) == {"beta"}
    alpha = state(registry, "alpha")
    assert alpha.state == State.EVICTED
    assert alpha.stats.evictions["capacity"] == 1


def test_busy_model_is_never_evicted_and_caller_gets_capacity_error(build):
    registry = build(Limits(max_models=1, capacity_wait_s=0.5), alpha={}, beta={})
    registry.predict("alpha", {})
    busy = threading.Thread(target=registry.predict, args=("alpha", {"op": "sleep", "seconds": 2.5}))
    busy.start()
    wait_in_flight(registry, "alpha")
    with pytest.raises(HubAtCapacity, match="at capacity"):
        registry.predict("beta", {})
    busy.join()
    assert state(registry, "alpha").stats.evictions["capacity"] == 0
    assert state(registry, "alpha").state == State.READY


def test_waiting_load_proceeds_once_the_busy_model_is_idle(build):
    registry = build(Limits(max_models=1, capacity_wait_s=10), alpha={}, beta={})
    registry.predict("alpha", {})
    busy = threading.Thread(target=registry.predict, args=("alpha", {"op": "sleep", "seconds": 1.0}))
    busy.start()
    wait_in_flight(registry, "alpha")
    assert registry.predict("beta", {"value": "b"})["echo"] == "b"
    busy.join()
    assert state(registry, "alpha").stats.evictions["capacity"] == 1


def test_a_steady_stream_to_one_model_does_not_starve_another(build):
    """Three callers keep alpha busy without a pause; beta's visitor used to wait
    out --capacity-wait and be told 'at capacity'. Now alpha is drained: it takes
    no new request, finishes the ones it holds, goes, and comes back after beta."""
    registry = build(Limits(max_models=1, capacity_wait_s=20), alpha={}, beta={})
    registry.predict("alpha", {})
    stop, errors, answered = threading.Event(), [], []

    def stream():
        while not stop.is_set():
            try:
                answered.append(registry.predict("alpha", {"op": "sleep", "seconds": 0.2})["pid"])
            except Exception as exc:  # noqa: BLE001 - the test reports them
                errors.append(exc)

    callers = [threading.Thread(target=stream) for _ in range(3)]
    for t in callers:
        t.start()
    time.sleep(2.5)  # past alpha's minimum stay, with its queue never empty
    started = time.monotonic()
    try:
        assert registry.predict("beta", {"value": 1})["echo"] == 1
        waited = time.monotonic() - started
    finally:
        time.sleep(1.0)
        stop.set()
        for t in callers:
            t.join(30)
    assert waited < 10, f"beta waited {waited:.1f} s behind alpha's stream"
    assert errors == []
    assert len(set(answered)) >= 2, "alpha was never reloaded after making room"


def test_a_load_waiting_for_room_says_so_not_downloading(build):
    """A local model whose load waits for a busy one is 'waiting for room', on the
    Status tab and in its caller's progress (it used to say 'downloading')."""
    registry = build(Limits(max_models=1, capacity_wait_s=10), alpha={}, beta={})
    registry.predict("alpha", {})
    busy = threading.Thread(target=registry.predict, args=("alpha", {"op": "sleep", "seconds": 1.5}))
    busy.start()
    wait_in_flight(registry, "alpha")
    said: list[str] = []
    waiting = threading.Thread(target=registry.predict, args=("beta", {}),
                               kwargs={"progress": lambda _f, text: said.append(text)})
    waiting.start()
    deadline = time.monotonic() + 5
    while state(registry, "beta").state != State.WAITING and time.monotonic() < deadline:
        time.sleep(0.02)
    assert state(registry, "beta").state == State.WAITING
    busy.join()
    waiting.join(30)
    assert any(text.startswith("waiting for room to load the beta model") for text in said), said
    assert not any("download" in text for text in said), said


def test_idle_ttl_evicts(build):
    registry = build(Limits(idle_ttl_s=0.5), alpha={})
    pid = registry.predict("alpha", {})["pid"]
    registry.sweep()
    assert registry.worker_pids() == {"alpha": pid}
    time.sleep(0.8)
    registry.sweep()
    assert registry.worker_pids() == {}
    alpha = state(registry, "alpha")
    assert alpha.state == State.EVICTED and alpha.stats.evictions["idle"] == 1
    assert registry.predict("alpha", {})["pid"] != pid  # reloads on demand


def test_memory_budget_evicts_idle_models(build):
    registry = build(Limits(memory_budget=200 * 2**20), alpha={"alloc_mb": 120}, beta={"alloc_mb": 120})
    registry.predict("alpha", {})
    assert state(registry, "alpha").memory_bytes > 120 * 2**20
    registry.predict("beta", {})
    assert set(registry.worker_pids()) == {"beta"}
    assert state(registry, "alpha").stats.evictions["memory"] == 1
    assert registry.totals().workers_memory_bytes <= 200 * 2**20


def test_crash_fails_only_its_request_and_reloads(build):
    registry = build(alpha={}, beta={})
    beta_pid = registry.predict("beta", {})["pid"]
    pid = registry.predict("alpha", {})["pid"]
    with pytest.raises(WorkerFailed, match="killed by signal 9"):
        registry.predict("alpha", {"op": "crash"})
    assert state(registry, "alpha").stats.crashes == 1
    assert registry.predict("beta", {})["pid"] == beta_pid
    assert registry.predict("alpha", {"value": 3})["pid"] != pid


def test_external_kill_is_noticed(build):
    registry = build(alpha={})
    pid = registry.predict("alpha", {})["pid"]
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    registry.sweep()
    alpha = state(registry, "alpha")
    assert alpha.state == State.FAILED and alpha.stats.crashes == 1
    assert registry.predict("alpha", {})["pid"] != pid


def test_a_workers_temp_files_go_with_it_on_eviction_and_when_killed(build, tmp_path, monkeypatch):
    """Frameworks leave temp files a killed worker never cleans (TensorFlow's autograph
    writes a module per traced function and removes it at a clean exit): each worker
    gets a TMPDIR of its own in the run's folder, and the folder goes with the worker."""
    run = tmp_path / "run"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(run))
    registry = build(alpha={}, beta={})
    a = registry.predict("alpha", {"op": "tempfile"})
    b = registry.predict("beta", {"op": "tempfile"})
    folders = {}
    for name, reply in (("alpha", a), ("beta", b)):
        folder = Path(reply["tempdir"])
        assert folder.parent == run and folder.name.startswith(f"worker-{name}-")
        assert Path(reply["path"]).parent == folder and Path(reply["path"]).exists()
        folders[name] = folder
    assert folders["alpha"] != folders["beta"]
    tempdir.sweep(run, max_age_s=0)  # the run's sweep leaves live workers' folders alone
    assert all(f.exists() for f in folders.values())

    os.kill(a["pid"], signal.SIGKILL)
    # the sweep notices the death once the process can be reaped (a killed process is a
    # zombie before its last thread has exited) and ends the handle, which removes the folder
    deadline = time.monotonic() + 10
    while folders["alpha"].exists() and time.monotonic() < deadline:
        registry.sweep()
        time.sleep(0.05)
    assert not folders["alpha"].exists(), "the killed worker's temp files were left behind"
    again = registry.predict("alpha", {"op": "tempfile"})
    assert again["pid"] != a["pid"] and Path(again["path"]).exists()
    assert folders["beta"].exists() and registry.predict("beta", {})["pid"] == b["pid"]

    assert registry.evict("beta")
    assert not folders["beta"].exists()
    registry.close()
    assert not any(run.glob("worker-*")), sorted(run.iterdir())


def test_hang_times_out_and_kills_the_worker(build):
    registry = build(alpha={}, beta={}, predict_timeout_s=1.0)
    pid = registry.predict("alpha", {})["pid"]
    beta = threading.Thread(target=registry.predict, args=("beta", {}))
    started = time.monotonic()
    with pytest.raises(WorkerTimeout, match="did not finish a prediction within 1 s"):
        beta.start()
        registry.predict("alpha", {"op": "sleep", "seconds": 30})
    assert time.monotonic() - started < 5
    beta.join()
    assert not psutil.pid_exists(pid)
    assert state(registry, "alpha").stats.timeouts == 1
    assert registry.predict("alpha", {"value": "back"})["echo"] == "back"


def test_input_errors_and_model_errors_keep_the_worker(build):
    registry = build(alpha={})
    pid = registry.predict("alpha", {})["pid"]
    with pytest.raises(InputError, match="makes no sense: 7"):
        registry.predict("alpha", {"op": "input_error", "value": 7})
    with pytest.raises(ModelError, match="failed on this request") as caught:
        registry.predict("alpha", {"op": "error"})
    assert "RuntimeError" not in str(caught.value)  # for the visitor: no exception names
    assert registry.predict("alpha", {})["pid"] == pid
    alpha = state(registry, "alpha")
    assert alpha.stats.errors == 1
    # for the operator: the exception and the traceback, pointing into the runtime
    assert "RuntimeError: the model broke" in alpha.error
    assert "Traceback" in alpha.traceback and "echo_runtime.py" in alpha.traceback


def test_unpicklable_result_fails_only_that_request(build):
    registry = build(alpha={})
    pid = registry.predict("alpha", {})["pid"]
    with pytest.raises(ModelError, match="failed on this request"):
        registry.predict("alpha", {"op": "unpicklable"})
    assert registry.predict("alpha", {"value": 3}) ["pid"] == pid  # same worker, still serving
    alpha = state(registry, "alpha")
    assert "cannot be sent to the hub" in alpha.error and "plain data" in alpha.error
    assert alpha.stats.crashes == 0


def test_failed_load_is_reported_and_others_keep_serving(build):
    registry = build(alpha={"fail_load": True}, beta={})
    with pytest.raises(WorkerFailed, match="could not be loaded") as caught:
        registry.predict("alpha", {})
    assert "RuntimeError" not in str(caught.value)
    alpha = state(registry, "alpha")
    assert alpha.state == State.FAILED and "fail at load" in alpha.error
    assert "Traceback" in alpha.traceback and "echo_runtime.py" in alpha.traceback
    assert registry.predict("beta", {"value": 1})["echo"] == 1


def test_framework_objects_are_refused_not_imported(build):
    registry = build(alpha={}, predict_timeout_s=120)  # the worker imports torch: slow on a busy machine
    with pytest.raises(ModelError, match="cannot use"):
        registry.predict("alpha", {"op": "torch"})
    assert "torch" in state(registry, "alpha").error and "plain data" in state(registry, "alpha").error
    assert registry.predict("alpha", {"value": 1})["echo"] == 1


def test_placeholder_is_built_when_no_folder_exists(build):
    registry = build()  # no model folders at all
    result = registry.predict("alpha", {})
    assert result["trained"] is False
    assert state(registry, "alpha").placeholder is True


def test_missing_local_override_is_a_clear_error(tmp_path):
    specs = discover(TEST_DEMOS)
    sources = ModelSources(specs, tmp_path, tmp_path, {"alpha": ModelSource(local_dir=tmp_path / "nope")})
    registry = Registry(specs, sources, backend=make_backend("spawn"))
    with pytest.raises(Exception, match="has no config.json"):
        registry.predict("alpha", {})
    registry.close()


# -- issue 10: registry correctness --------------------------------------------------


def live_workers() -> int:
    """Worker processes this test process's registries started that are still running
    (direct children only: a hub started by another test has workers of its own)."""
    count = 0
    for child in psutil.Process().children(recursive=False):
        try:
            forked = child.name().startswith("w:")  # a worker forked from a template names itself
            if (forked or "demohub.backends.local.worker" in " ".join(child.cmdline())) and child.status() != psutil.STATUS_ZOMBIE:
                count += 1
        except psutil.NoSuchProcess:
            pass
    return count


def test_budget_counts_loads_in_progress_at_their_measured_size(build):
    """Two measured models and a budget for one: two concurrent first requests
    must never have both models in memory (a reserved load used to count 0)."""
    registry = build(Limits(max_models=3, memory_budget=None), alpha={"alloc_mb": 120, "load_sleep": 1.0},
                     beta={"alloc_mb": 120, "load_sleep": 1.0})
    sizes = []
    for name in ("alpha", "beta"):  # measure both, then start from nothing
        registry.predict(name, {})
        registry.sweep()
        sizes.append(state(registry, name).memory_bytes)
        registry.evict(name)
    one_model = max(sizes)
    assert one_model > 120 * 2**20
    registry.limits = dataclasses.replace(registry.limits, memory_budget=int(one_model * 1.5))
    peak, stop = [0], threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], live_workers())
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    callers = [threading.Thread(target=registry.predict, args=(n, {})) for n in ("alpha", "beta")]
    for t in callers:
        t.start()
    for t in callers:
        t.join(timeout=60)
    stop.set()
    watcher.join()
    assert peak[0] == 1, f"{peak[0]} workers were alive at once under a budget for one"
    assert sum(state(registry, n).stats.evictions["memory"] for n in ("alpha", "beta")) == 1


def test_a_load_ahead_in_line_does_not_count_the_reservations_behind_it(tmp_path):
    """The registry's wiring of policy.counts_against: two loads waiting for room,
    each holding a reservation (each evicted a model), see only what is ahead of
    them; a load that is starting counts against both. (No process: the slots are
    set as `_make_room` leaves them.) The budget sweep counts only the starting one."""
    specs = discover(TEST_DEMOS)
    registry = Registry(specs, ModelSources(specs, tmp_path, tmp_path / "p", {}), Limits(memory_budget=2**30),
                        backend=make_backend("spawn"))
    try:
        alpha, beta = registry._slots["alpha"], registry._slots["beta"]
        for slot, place, need in ((alpha, 1, 650), (beta, 2, 450)):
            slot.reserved, slot.in_line, slot.peak_private = True, place, need * 2**20
        ahead, behind = registry._snapshot(exclude=alpha, fresh=False), registry._snapshot(exclude=beta, fresh=False)
        assert (ahead.loading, ahead.reserved) == (0, 0)
        assert behind.loading == 1 and behind.reserved >= 650 * 2**20
        alpha.in_line = None  # alpha has room now and is starting: beta still counts it
        beta.in_line = 3
        assert registry._snapshot(exclude=beta, fresh=False).loading == 1
        sweep = registry._snapshot(exclude=None, fresh=False)  # the budget sweep: only what is starting
        assert sweep.loading == 1 and sweep.reserved < 2 * 650 * 2**20
    finally:
        for slot in (alpha, beta):
            slot.reserved, slot.in_line = False, None
        registry.close()


def test_never_measured_loads_see_the_ones_ahead_of_them_in_line(tmp_path):
    """The registry's wiring of `Snapshot.blind_ahead`: a load of a model never
    measured counts the never-measured loads that asked before it, not those
    behind it, and not a model whose size is known."""
    specs = discover(TEST_DEMOS)
    registry = Registry(specs, ModelSources(specs, tmp_path, tmp_path / "p", {}), Limits(memory_budget=2**30),
                        backend=make_backend("spawn"))
    try:
        alpha, beta = registry._slots["alpha"], registry._slots["beta"]
        alpha.in_line, beta.in_line = 1, 2
        assert [registry._snapshot(exclude=s, fresh=False).blind_ahead for s in (alpha, beta)] == [0, 1]
        assert registry._snapshot(exclude=None, fresh=False).blind_ahead == 0  # the budget sweep is in no line
        alpha.peak_private = 200 * 2**20  # measured on an earlier load: its need is no guess
        assert registry._snapshot(exclude=beta, fresh=False).blind_ahead == 0
    finally:
        for slot in (alpha, beta):
            slot.in_line, slot.peak_private = None, 0
        registry.close()


@pytest.mark.parametrize("action,loaded,says", [
    (policy.Wait(("alpha",)), ["alpha"], "every loaded model (alpha) is busy serving requests"),
    (policy.Drain("beta"), ["beta", "alpha"], "every loaded model (alpha, beta) is busy"),
    (policy.Wait((), loads=2), [], "still loading other models, and loads gamma only after it has measured them"),
])
def test_a_load_that_waited_out_its_deadline_says_what_it_waited_for(action, loaded, says):
    from demohub.registry import _at_capacity

    assert says in _at_capacity(action, "gamma", loaded)


def test_failed_load_backs_off_and_says_when_it_retries(build):
    registry = build(Limits(load_retry_s=1.0), alpha={"fail_load": True})
    with pytest.raises(WorkerFailed, match="could not be loaded"):
        registry.predict("alpha", {})
    started = time.monotonic()
    with pytest.raises(ModelUnavailable, match=r"next try is in \d+ s"):
        registry.predict("alpha", {})
    assert time.monotonic() - started < 0.5  # answered at once: no worker was started
    alpha = state(registry, "alpha")
    assert alpha.stats.load_failures == 1 and 0 < alpha.retry_in_s <= 1.0
    time.sleep(1.1)
    with pytest.raises(WorkerFailed, match="could not be loaded"):
        registry.predict("alpha", {})  # tried again after the wait...
    alpha = state(registry, "alpha")
    assert alpha.stats.load_failures == 2 and 1.0 < alpha.retry_in_s <= 2.0  # ...and the wait doubled


def test_capacity_is_not_a_load_failure(build):
    # min_stay_s=0: no fixed stay (a fresh model's stay is tested apart)
    registry = build(Limits(max_models=1, capacity_wait_s=0.3, min_stay_s=0.0), alpha={}, beta={})
    registry.predict("alpha", {})
    answers = []
    busy = threading.Thread(target=lambda: answers.append(registry.predict("alpha", {"op": "sleep", "seconds": 1.5})))
    busy.start()
    wait_in_flight(registry, "alpha")
    with pytest.raises(HubAtCapacity):
        registry.predict("beta", {})
    beta = state(registry, "beta")
    assert beta.state != State.FAILED and beta.stats.load_failures == 0 and beta.error is None
    busy.join()
    assert answers, "alpha's long call failed"
    # a model used in the last second stays up to twice its load time (policy._staying): on a busy
    # machine alpha's load takes over a second, so let its last use be a second old
    time.sleep(1.05)
    assert registry.predict("beta", {"value": 1})["echo"] == 1  # no back-off either


def test_a_timeout_is_a_timeout_not_a_crash(build):
    """The sweeper must not also record the worker a timed-out call killed."""
    registry = build(alpha={}, predict_timeout_s=1.0)
    registry.start(interval_s=0.01)
    registry.predict("alpha", {})
    for _ in range(3):
        with pytest.raises(WorkerTimeout):
            registry.predict("alpha", {"op": "sleep", "seconds": 30})
        time.sleep(0.1)
        registry.predict("alpha", {})
    alpha = state(registry, "alpha")
    assert alpha.stats.timeouts == 3 and alpha.stats.crashes == 0


def test_deadline_covers_sending_to_a_stopped_worker(build):
    """A 5 MB request to a SIGSTOPped worker, and a small one behind it, both
    answer within their deadline (the send used to block forever)."""
    registry = build(alpha={}, predict_timeout_s=2.0)
    pid = registry.predict("alpha", {})["pid"]
    os.kill(pid, signal.SIGSTOP)
    outcomes = {}

    def call(tag, request):
        started = time.monotonic()
        try:
            registry.predict("alpha", request)
            outcomes[tag] = ("ok", time.monotonic() - started)
        except Exception as exc:  # noqa: BLE001 - recorded for the asserts
            outcomes[tag] = (type(exc).__name__, time.monotonic() - started)

    big = threading.Thread(target=call, args=("big", {"value": "x" * 5_000_000}))
    small = threading.Thread(target=call, args=("small", {"value": 1}))
    big.start()
    time.sleep(0.2)
    small.start()
    big.join(timeout=15)
    small.join(timeout=15)
    assert not big.is_alive() and not small.is_alive(), "a request hung past its deadline"
    assert outcomes["big"][0] == "WorkerTimeout" and outcomes["big"][1] < 5
    assert outcomes["small"][1] < 8
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert registry.predict("alpha", {"value": 2})["echo"] == 2  # and it came back


def test_idle_openmp_threads_spin_briefly_unless_the_operator_says_otherwise(build, monkeypatch):
    """Workers (spawned, and forked from a template) start with a short OpenMP spin;
    an operator's OMP_WAIT_POLICY wins over it."""
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert build(alpha={}).predict("alpha", {})["omp_wait"] == {"GOMP_SPINCOUNT": "10000", "OMP_WAIT_POLICY": None}
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert build(beta={}).predict("beta", {})["omp_wait"] == {"GOMP_SPINCOUNT": None, "OMP_WAIT_POLICY": "PASSIVE"}


def test_concurrency_is_what_a_model_can_really_run(build):
    registry = build(alpha={})
    assert registry.spec("alpha").baseline_concurrency == 4  # what the one-process baseline would allow
    # one process runs one call at a time, and takes one more staged behind it
    assert registry.concurrency("alpha") == 2


def test_cpu_threads_are_shared_between_running_calls(build):
    registry = build(Limits(threads_min_call_s=0.0), alpha={}, beta={})
    registry.predict("alpha", {})  # loaded: a model's running calls are at most its copies
    registry.predict("beta", {})
    registry.cores = 4
    alpha, beta = registry._slots["alpha"], registry._slots["beta"]
    assert registry._grant_threads(alpha) == 4  # nothing else running: every core
    alpha.calls = 1
    assert registry._grant_threads(alpha) == 4  # counted as the caller itself
    alpha.calls = 2
    assert registry._grant_threads(alpha) == 4  # the second waits staged behind the first: not running
    beta.calls = 1
    assert registry._grant_threads(alpha) == 2
    beta.calls = 2
    assert registry._grant_threads(alpha) == 2
    registry.cores = 2
    assert registry._grant_threads(alpha) == 1


def test_a_model_with_short_calls_gets_one_thread_even_alone(build):
    registry = build(alpha={}, beta={})
    registry.cores = 4
    alpha, beta = registry._slots["alpha"], registry._slots["beta"]
    alpha.stats.predictions, alpha.stats.predict_seconds_total = 10, 0.07  # 7 ms a call
    beta.stats.predictions, beta.stats.predict_seconds_total = 10, 2.0  # 200 ms a call
    assert registry._grant_threads(alpha) == 1
    assert registry._grant_threads(beta) == 4


def test_the_one_thread_reaches_the_workers_torch(build):
    """Through a real worker: with every call counted as short, the second call
    (the first one's length now known) runs with a one-thread torch pool."""
    registry = build(Limits(threads_min_call_s=3600), alpha={})
    registry.predict("alpha", {"op": "torch_threads"})  # imports torch in the worker
    assert registry.predict("alpha", {"op": "torch_threads"})["torch_threads"] == 1


def loading_pid(registry, name: str, timeout: float = 60) -> int:
    """The PID of the worker `name` is loading in, once it exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        handle = registry._slots[name].loading
        if handle is not None and handle.pid:
            return handle.pid
        time.sleep(0.02)
    raise AssertionError(f"no worker started loading {name} within {timeout} s")


def _first_request(registry, result: dict) -> threading.Thread:
    def first():
        started = time.monotonic()
        try:
            registry.predict("alpha", {"value": 1})
            result["outcome"] = "ok"
        except WorkerFailed as exc:
            result["outcome"] = str(exc)
        result["seconds"] = time.monotonic() - started

    caller = threading.Thread(target=first)
    caller.start()
    return caller


def _next_loading_pid(registry, other: int) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pid = loading_pid(registry, "alpha")
        if pid != other:
            return pid
        time.sleep(0.02)
    raise AssertionError("no second load started")


@pytest.mark.parametrize("how", [signal.SIGSTOP, signal.SIGKILL], ids=["paused", "killed"])
def test_a_load_killed_or_paused_from_outside_is_tried_again_at_once(build, how):
    """Not the demo's fault, so no back-off: the load runs again at once (it used
    to fail its visitors and back off, and a SIGSTOP used to hang them for the
    whole load deadline). Only once: a second such failure is a failure."""
    registry = build(alpha={"load_sleep": 2.0}, load_timeout_s=300)
    result: dict = {}
    caller = _first_request(registry, result)
    pid = loading_pid(registry, "alpha")
    os.kill(pid, how)
    caller.join(timeout=60)
    assert not caller.is_alive(), "the request hung behind a stopped loading worker"
    assert result["outcome"] == "ok" and result["seconds"] < 30, result
    assert gone(pid)
    alpha = state(registry, "alpha")
    assert alpha.stats.load_failures == 0 and alpha.stats.loads == 1 and alpha.state == State.READY


def test_a_load_killed_twice_fails_and_backs_off(build):
    registry = build(alpha={"load_sleep": 2.0}, load_timeout_s=300)
    result: dict = {}
    caller = _first_request(registry, result)
    first = loading_pid(registry, "alpha")
    os.kill(first, signal.SIGKILL)
    os.kill(_next_loading_pid(registry, first), signal.SIGKILL)
    caller.join(timeout=60)
    assert "killed by signal 9" in result["outcome"], result
    assert state(registry, "alpha").stats.load_failures == 1
    time.sleep(registry.limits.load_retry_s + 0.1)  # past the back-off
    assert registry.predict("alpha", {"value": 1})["echo"] == 1


def test_close_ends_a_worker_that_is_still_loading(build):
    registry = build(alpha={"load_sleep": 30.0}, load_timeout_s=300)
    caller = threading.Thread(target=lambda: pytest.raises(WorkerFailed, registry.predict, "alpha", {}))
    caller.start()
    pid = loading_pid(registry, "alpha")
    registry.close()
    caller.join(timeout=15)
    assert not caller.is_alive()
    deadline = time.monotonic() + 10
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(pid)


class SlowToEnd(SpawnBackend):
    """Real workers whose `kill` first stalls, as reaping a process stuck in the
    kernel can: the registry must never do that while holding its lock."""

    def start(self, spec, model_dir, *, placeholder):
        worker = super().start(spec, model_dir, placeholder=placeholder)
        kill = worker.kill

        def slow_kill(reason="killed"):
            time.sleep(3.0)
            kill(reason)

        worker.kill = slow_kill
        return worker


def test_ending_a_crashed_worker_never_blocks_the_others(tmp_path):
    specs = discover(TEST_DEMOS)
    overrides = {n: ModelSource(local_dir=make_model(tmp_path / n)) for n in ("alpha", "beta")}
    registry = Registry(specs, ModelSources(specs, tmp_path, tmp_path / "p", overrides), backend=SlowToEnd())
    try:
        registry.predict("alpha", {})
        registry.predict("beta", {})
        crasher = threading.Thread(target=lambda: pytest.raises(WorkerFailed, registry.predict,
                                                                "alpha", {"op": "crash"}))
        crasher.start()
        time.sleep(0.5)  # the crash is being recorded and its worker ended (3 s)
        started = time.monotonic()
        registry.status()
        assert registry.predict("beta", {"value": 1})["echo"] == 1
        assert time.monotonic() - started < 1.5, "the registry's lock was held while a worker was ended"
        crasher.join(timeout=30)
        assert state(registry, "alpha").stats.crashes == 1
    finally:
        registry.close()


class BrokenStart(SpawnBackend):
    """A mechanism fault (here the errno the template race raised): not the model's."""

    def start(self, spec, model_dir, *, placeholder):
        raise OSError(9, "Bad file descriptor")


def test_a_fault_in_the_mechanism_reaches_the_client_as_a_sentence(tmp_path):
    specs = discover(TEST_DEMOS)
    registry = Registry(specs, ModelSources(specs, tmp_path, tmp_path / "p", {}), backend=BrokenStart())
    try:
        with pytest.raises(ModelError, match="could not be started") as caught:
            registry.predict("alpha", {})
        assert "Bad file descriptor" not in str(caught.value) and "OSError" not in str(caught.value)
        alpha = state(registry, "alpha")
        assert "OSError" in alpha.traceback and "Bad file descriptor" in alpha.traceback
        assert alpha.state == State.FAILED and alpha.retry_in_s > 0
    finally:
        registry.close()
