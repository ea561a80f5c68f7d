"""Workers forked from framework templates (`--start-method template`): real
template processes, real forks, a real torch import, a real hub."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from demohub.backends.local.template import TemplateBackend, framework_of, preloads_of
from demohub.discovery import discover
from demohub.errors import WorkerFailed
from demohub.registry import Limits, Registry
from demohub.sources import ModelSources
from support import FIXTURES, PROJECT_ROOT, TEST_DEMOS, gone, is_zombie, mapped_framework_libs, running_hub

#: every test here fails if a blocking call ran under a coordinating lock (tests/lockcheck.py)
pytestmark = pytest.mark.usefixtures("no_blocking_under_locks")

TORCH_DEMOS = FIXTURES / "torchdemos"
THREAD_DEMOS = FIXTURES / "threaddemos"


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def wait_until(check, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


@pytest.fixture
def make_registry(tmp_path):
    made = []

    def make(demos: Path, limits: Limits = Limits(), **backend_options) -> tuple[Registry, TemplateBackend]:
        specs = discover(demos)
        backend = TemplateBackend(specs=specs, **backend_options)
        registry = Registry(specs, ModelSources(specs, tmp_path / "models", tmp_path / "placeholders", {}),
                            limits, backend=backend)
        made.append(registry)
        return registry, backend

    yield make
    for registry in made:
        registry.close()


def test_family_is_read_from_the_runtime_source_without_importing_it():
    families = {s.name: framework_of(s) for s in discover(PROJECT_ROOT / "demos")}
    assert families == {"cassava": "torch", "durian": "tensorflow", "questions": "torch", "search": "torch"}
    cassava = next(s for s in discover(PROJECT_ROOT / "demos") if s.name == "cassava")
    assert preloads_of(cassava, "torch") == ["torchvision.models"]  # imported inside a function
    # the echo runtime imports torch only inside predict(): not at import, so not the torch family
    assert {framework_of(s) for s in discover(TEST_DEMOS)} == {"none"}
    assert {framework_of(s) for s in discover(TORCH_DEMOS)} == {"torch"}


def test_a_forked_worker_is_killed_and_replaced_without_touching_its_template_or_sibling(make_registry):
    registry, backend = make_registry(TORCH_DEMOS)
    a = registry.predict("torch_a", {"value": 1})
    b = registry.predict("torch_b", {"value": 2})
    [template] = backend.shared("pss")
    assert template.name == "template torch" and template.memory_bytes > 0 and not template.idle
    # both workers were forked from the one template, and are the hub's children now
    for result in (a, b):
        assert psutil.Process(result["pid"]).ppid() == os.getpid()
        assert mapped_framework_libs(result["pid"]), "the worker does not map torch"
    assert a["pid"] != b["pid"]
    assert mapped_framework_libs(template.pid)  # torch really imported in the template...
    assert threads_of(template.pid) == 1  # ...and no thread pool started there
    assert a["threads"] == 2 and a["process_threads"] >= 2  # the child runs its own pool

    os.kill(a["pid"], signal.SIGKILL)
    # (a killed process shows as a zombie before its last thread has exited; only then is it waitable)
    dead = registry._slots["torch_a"].handle
    assert wait_until(lambda: not dead.alive(), 10)
    assert registry.predict("torch_b", {"value": 3})["pid"] == b["pid"]  # the sibling never noticed
    again = registry.predict("torch_a", {"value": 1})  # the death is noticed, a new worker forked
    assert again["pid"] not in (a["pid"], b["pid"]) and again["out"] == a["out"]

    # killed in the middle of a request: that request, and only it, fails with a sentence
    failure = {}

    def slow_call():
        try:
            registry.predict("torch_a", {"op": "sleep", "seconds": 20})
        except WorkerFailed as exc:
            failure["error"] = str(exc)

    caller = threading.Thread(target=slow_call)
    caller.start()
    assert wait_until(lambda: registry._slots["torch_a"].calls == 1, 10)
    time.sleep(0.5)  # the request is inside the worker
    os.kill(again["pid"], signal.SIGKILL)
    killed = [a["pid"], again["pid"]]
    caller.join(timeout=15)
    assert "killed by signal 9" in failure.get("error", ""), failure
    assert registry.predict("torch_b", {"value": 3})["pid"] == b["pid"]
    again = registry.predict("torch_a", {"value": 1})
    [still] = backend.shared("pss")
    assert still.pid == template.pid and psutil.Process(template.pid).is_running()
    assert next(s for s in registry.status() if s.name == "torch_a").stats.crashes == 2
    # and nothing is left behind: both killed workers were reaped by us, not left zombies. (Only
    # these two: this process is a subreaper now, so an orphan of another test's hub ends up
    # here as a zombie that is not this test's.)
    zombies = [pid for pid in killed if is_zombie(pid)]
    assert not zombies, zombies

    # the other way round: a template that dies takes no worker with it, and the next
    # load of its family starts a new one
    os.kill(template.pid, signal.SIGKILL)
    assert wait_until(lambda: gone(template.pid), 5)
    assert registry.predict("torch_b", {})["pid"] == b["pid"]
    assert registry.predict("torch_a", {})["pid"] == again["pid"]
    registry.sweep()
    assert registry.evict("torch_a")
    replaced = registry.predict("torch_a", {"value": 1})
    [new_template] = backend.shared("pss")
    assert new_template.pid != template.pid and replaced["out"] == a["out"]


def test_idle_template_ends_after_its_ttl_and_on_trim(make_registry):
    registry, backend = make_registry(TORCH_DEMOS, Limits(idle_ttl_s=None), template_ttl_s=0.5)
    pid = registry.predict("torch_a", {})["pid"]
    [template] = backend.shared("pss")
    registry.sweep()
    assert backend.shared("pss"), "a template with a live worker was ended"
    assert registry.evict("torch_a") and gone(pid)
    time.sleep(0.8)
    registry.sweep()  # starts its idle clock
    time.sleep(0.8)
    registry.sweep()
    assert backend.shared("pss") == [] and wait_until(lambda: gone(template.pid), 5)

    # trim (the budget needs room) ends an idle template at once, whatever its TTL
    registry, backend = make_registry(TORCH_DEMOS, Limits(idle_ttl_s=None), template_ttl_s=None)
    registry.predict("torch_a", {})
    [template] = backend.shared("pss")
    assert backend.trim(set()) == 0  # not idle: its worker is alive
    registry.evict("torch_a")
    assert backend.shared("pss")[0].idle
    assert backend.trim({"torch_b"}) == 0  # a torch demo is loading: keep its template
    assert backend.trim(set()) > 0
    assert wait_until(lambda: gone(template.pid), 5) and backend.shared("pss") == []
    assert registry.predict("torch_a", {})["pid"]  # a new template starts on demand


def test_budget_counts_the_template_and_trims_it_for_room(tmp_path):
    """An idle torch template holding memory the budget needs is ended before a
    numpy demo loads; the templates' memory is in the totals (the Status tab)."""
    specs = discover(TORCH_DEMOS) + discover(TEST_DEMOS)
    backend = TemplateBackend(specs=specs, template_ttl_s=None)
    registry = Registry(specs, ModelSources(specs, tmp_path / "m", tmp_path / "p", {}),
                        Limits(idle_ttl_s=None), backend=backend)
    try:
        registry.predict("torch_a", {})
        registry.evict("torch_a")
        [torch_template] = backend.shared("pss")
        assert torch_template.idle and torch_template.memory_bytes > 100 * 2**20
        totals = registry.totals()
        assert totals.shared_memory_bytes == torch_template.memory_bytes
        budget = int(torch_template.memory_bytes * 0.9)  # room for a numpy worker, not for torch too
        registry.limits = Limits(idle_ttl_s=None, memory_budget=budget)
        assert registry.predict("alpha", {"value": 1})["echo"] == 1
        assert wait_until(lambda: gone(torch_template.pid), 5)
        assert [p.name for p in backend.shared("pss")] == ["template none"]
        totals = registry.totals()
        assert totals.workers_memory_bytes + totals.shared_memory_bytes <= budget
    finally:
        registry.close()


def test_a_family_that_starts_threads_at_import_keeps_the_spawn_path(make_registry, caplog):
    registry, backend = make_registry(THREAD_DEMOS)
    result = registry.predict("threaded", {})
    assert "none" in backend.unsafe and "2 threads" in backend.unsafe["none"], backend.unsafe
    status = next(s for s in registry.status() if s.name == "threaded")
    assert "spawned" in status.where
    assert psutil.Process(result["pid"]).ppid() == os.getpid()
    assert backend.shared("pss") == []  # the unsafe template was ended
    assert registry.predict("threaded", {})["pid"] == result["pid"]


def test_a_copy_whose_template_cannot_fork_starts_spawned_with_its_own_threads(make_registry, tmp_path):
    """An extra copy is started with its share of the cores (`threads`); when its
    family turns out unable to fork, the spawned worker must keep that share
    (TensorFlow fixes its pool at start), not start with every core."""
    _, backend = make_registry(THREAD_DEMOS)
    spec = next(s for s in discover(THREAD_DEMOS) if s.name == "threaded")
    (tmp_path / "threaded").mkdir()
    (tmp_path / "threaded" / "config.json").write_text("{}")
    handle = backend.start(spec, tmp_path / "threaded", placeholder=False, threads=1)
    try:
        handle.wait_ready(120)
        assert "none" in backend.unsafe and handle.origin == "spawned"
        environ = Path(f"/proc/{handle.pid}/environ").read_bytes().split(b"\0")
        assert b"OMP_NUM_THREADS=1" in environ and b"TF_NUM_INTRAOP_THREADS=1" in environ
    finally:
        handle.kill("test over")


def hub_tree(pid: int) -> list[psutil.Process]:
    return [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]


def tree_pss(pid: int) -> int:
    total = 0
    for proc in hub_tree(pid):
        try:
            total += proc.memory_full_info().pss
        except psutil.NoSuchProcess:
            pass
    return total


def test_hub_in_template_mode_maps_no_framework_and_returns_memory_on_eviction(tmp_path):
    models = tmp_path / "models"
    for name in ("torch_a", "torch_b"):
        (models / name).mkdir(parents=True)
        (models / name / "config.json").write_text(json.dumps({"trained": True}))
    with running_hub("--demos-dir", str(TORCH_DEMOS), "--models-dir", str(models), "--start-method",
                     "template", "--idle-ttl", "2", timeout=120) as hub:
        time.sleep(1.0)
        before = tree_pss(hub.pid)
        client = hub.client()
        for demo in ("torch_a", "torch_b"):
            # read each worker just after its answer: its 2 s idle TTL may run out while the next loads
            worker = client.predict('{"value": 1}', api_name=f"/{demo}")["pid"]
            assert psutil.Process(worker).ppid() == hub.pid  # the forked workers are the hub's children
            assert mapped_framework_libs(worker), demo
        loaded = tree_pss(hub.pid)
        [template] = [p.pid for p in psutil.Process(hub.pid).children() if p.name() == "template:torch"]
        assert mapped_framework_libs(hub.pid) == set()
        assert mapped_framework_libs(template)
        # models idle 2 s, then the template idle 2 s more: everything goes
        assert wait_until(lambda: psutil.Process(hub.pid).children() == [], 30, 0.25), \
            [p.name() for p in psutil.Process(hub.pid).children()]
        after = tree_pss(hub.pid)
        events = [json.loads(line) for line in hub.logs().splitlines() if line.startswith('{"ts"')]
    assert loaded - before > 100 * 2**20  # torch in a template and its worker(s)
    assert after - before < 30 * 2**20, (before, loaded, after)
    assert [e["reason"] for e in events if e["event"] == "template_end"] == ["idle"]


def test_forked_workers_and_templates_exit_when_the_hub_dies(tmp_path):
    with running_hub("--demos-dir", str(TEST_DEMOS), "--start-method", "template") as hub:
        worker = hub.client().predict('{"value": 1}', api_name="/alpha")["pid"]
        template = next(p.pid for p in psutil.Process(hub.pid).children() if p.name() == "template:none")
        os.kill(hub.pid, signal.SIGKILL)
        hub.proc.wait(timeout=10)
        assert wait_until(lambda: gone(worker) and gone(template), 15), "a worker outlived the hub"


def test_a_stopped_template_is_ended_and_its_family_still_loads(make_registry):
    """SIGSTOP on a template used to hang every load of its family until the load
    deadline (the abuse soak stopped one for 60 s and two requests hung)."""
    registry, backend = make_registry(TEST_DEMOS, Limits(idle_ttl_s=None), template_ttl_s=None)
    registry.predict("alpha", {})
    [template] = backend.shared("pss")
    os.kill(template.pid, signal.SIGSTOP)
    started = time.monotonic()
    result = registry.predict("beta", {"value": 5})  # needs a fork from the stopped template
    assert result["echo"] == 5 and time.monotonic() - started < 20
    assert wait_until(lambda: gone(template.pid), 5)
    assert registry.predict("alpha", {"value": 6})["echo"] == 6  # the sibling never noticed
