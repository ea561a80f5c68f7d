"""`Registry.reload` / `add` / `remove` (--reload, issue 28) with real forked workers
over the numpy-only test demos, under the lock harness (tests/lockcheck.py)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from demohub.backends import make_backend
from demohub.discovery import discover
from demohub.errors import ModelUnavailable
from demohub.registry import Limits, Registry, State
from demohub.sources import ModelSources
from demohub.spec import ModelSource
from support import TEST_DEMOS, gone

pytestmark = pytest.mark.usefixtures("no_blocking_under_locks")


@pytest.fixture
def registry(tmp_path):
    """alpha loads from a local folder (tmp/alpha/config.json), beta from its placeholder."""
    specs = discover(TEST_DEMOS)
    (tmp_path / "alpha").mkdir()
    (tmp_path / "alpha" / "config.json").write_text(json.dumps({"trained": True}))
    sources = ModelSources(specs, tmp_path / "models", tmp_path / "placeholders",
                           {"alpha": ModelSource(local_dir=tmp_path / "alpha")})
    backend = make_backend("template", specs=specs, template_ttl_s=None)
    registry = Registry(specs, sources, Limits(load_retry_s=30.0), backend=backend)
    yield registry
    registry.close()


def until(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s")


def test_a_reloaded_model_ends_after_its_running_call_and_the_next_request_loads_anew(registry):
    old = registry.predict("alpha", {"op": "echo"})["pid"]
    beta = registry.predict("beta", {"op": "echo"})["pid"]
    answers: list[dict] = []
    call = threading.Thread(target=lambda: answers.append(
        registry.predict("alpha", {"op": "sleep", "seconds": 1.0})))
    call.start()
    until(lambda: next(s for s in registry.status() if s.name == "alpha").in_flight == 1)
    time.sleep(0.2)  # inside the worker now
    registry.reload("alpha", "runtime.py was modified")
    assert registry.worker_pids().get("alpha") is None  # out of service at once...
    assert not gone(old)  # ...but it finishes the call it runs
    call.join(10)
    assert answers and answers[0]["pid"] == old
    until(lambda: gone(old))  # and then it ends
    assert registry.predict("alpha", {"op": "echo"})["pid"] not in (old, None)
    assert registry.predict("beta", {"op": "echo"})["pid"] == beta  # untouched


def test_a_reload_forgets_the_back_off_of_a_failed_load(registry, tmp_path):
    (tmp_path / "alpha" / "config.json").write_text(json.dumps({"fail_load": True}))
    with pytest.raises(Exception, match="could not be loaded|failed"):
        registry.predict("alpha", {"op": "echo"})
    with pytest.raises(ModelUnavailable, match="next try is in"):  # back-off: 30 s here
        registry.predict("alpha", {"op": "echo"})
    (tmp_path / "alpha" / "config.json").write_text(json.dumps({"trained": True}))
    registry.reload("alpha", "its model folder changed (config.json modified)")
    assert next(s for s in registry.status() if s.name == "alpha").state == State.NOT_LOADED
    assert registry.predict("alpha", {"op": "echo"})["echo"] is None  # at once: the author just saved


def test_a_removed_demo_ends_its_worker_and_found_again_loads_anew(registry):
    pid = registry.predict("beta", {"op": "echo"})["pid"]
    registry.remove("beta")
    assert "beta" not in registry.names
    until(lambda: gone(pid))
    registry.add(discover(TEST_DEMOS)[1])  # back again, as rediscovery finds it
    assert registry.predict("beta", {"op": "echo"})["pid"] != pid


def test_a_save_during_a_load_loads_again_once_ready(registry, tmp_path):
    (tmp_path / "alpha" / "config.json").write_text(json.dumps({"load_sleep": 1.0}))
    answers: list[dict] = []
    call = threading.Thread(target=lambda: answers.append(registry.predict("alpha", {"op": "echo"})))
    call.start()
    until(lambda: next(s for s in registry.status() if s.name == "alpha").state == State.LOADING)
    registry.reload("alpha", "runtime.py was modified")  # the load in progress read the old code
    call.join(20)
    alpha = next(s for s in registry.status() if s.name == "alpha")
    assert answers and alpha.stats.loads == 2  # answered by a worker loaded after the save
    assert answers[0]["pid"] == registry.worker_pids()["alpha"]
