"""The real hub process, driven through HTTP and `gradio_client`."""

from __future__ import annotations

import json
import time

import psutil
import pytest
from gradio_client.exceptions import AppError

from support import TEST_DEMOS, mapped_framework_libs, running_hub, start_hub

DEMO_ARGS = ("--demos-dir", str(TEST_DEMOS))


def total_pss(pid: int) -> int:
    """The hub's whole footprint: its own process plus every worker."""
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    total = 0
    for proc in procs:
        try:
            total += proc.memory_full_info().pss
        except psutil.NoSuchProcess:
            pass
    return total


def write_model(folder, **config):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"trained": True, **config}))
    return folder


@pytest.fixture(scope="module", params=["template", "spawn"])
def hub(tmp_path_factory, request):
    """One hub per start method: every test below (isolation, memory returned on
    eviction, no framework in the hub) holds for forked and spawned workers alike."""
    models = tmp_path_factory.mktemp("models")
    write_model(models / "alpha", marker="local alpha", load_sleep=2.0)
    with running_hub(*DEMO_ARGS, "--models-dir", str(models), "--start-method", request.param) as server:
        yield server


def test_page_is_served_before_any_model_loads(hub):
    status, body = hub.get("/")
    assert status == 200 and "<html" in body.lower()
    assert hub.worker_pids() == []
    assert "demohub_loaded_models 0" in hub.get("/metrics")[1]


def test_public_api_is_exactly_one_endpoint_per_demo(hub):
    api = hub.client().view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == {"/alpha", "/beta"}
    assert api["unnamed_endpoints"] == {}


def test_cold_call_reports_load_progress_then_answers(hub):
    job = hub.client().submit('{"value": "cold"}', api_name="/alpha")
    descriptions = set()
    while not job.done():
        status = job.status()
        for unit in status.progress_data or []:
            if unit.desc:
                descriptions.add(unit.desc)
        time.sleep(0.1)
    result = job.result()
    assert result["echo"] == "cold" and result["marker"] == "local alpha"
    # a fresh cache dir: no load measured yet, so no number (tests/test_hub_lifecycle.py: after a restart)
    assert "loading alpha model (first load: no estimate yet)" in descriptions, descriptions


def test_errors_reach_the_client_as_readable_messages(hub):
    client = hub.client()
    with pytest.raises(AppError, match="that input makes no sense: 5"):
        client.predict('{"op": "input_error", "value": 5}', api_name="/alpha")
    with pytest.raises(AppError, match="request is not JSON"):
        client.predict("{not json", api_name="/beta")
    with pytest.raises(AppError, match="worker was killed by signal 9"):
        client.predict('{"op": "crash"}', api_name="/beta")
    assert client.predict('{"value": 2}', api_name="/beta")["echo"] == 2


def test_metrics_and_status_count_what_happened(hub):
    hub.client().predict('{"value": 1}', api_name="/alpha")
    text = hub.get("/metrics")[1]
    assert 'demohub_loads_total{model="alpha"} 1' in text
    assert 'demohub_model_state{model="alpha",state="ready"} 1' in text
    assert "# TYPE demohub_evictions_total counter" in text
    assert hub.get("/healthz")[1].startswith('{"status":"ok"')


def test_hub_process_never_maps_a_framework(hub):
    with pytest.raises(AppError, match="cannot use"):
        hub.client().predict('{"op": "torch"}', api_name="/beta")
    assert "a worker returned a torch." in hub.logs() and "results must be plain data" in hub.logs()  # the author's explanation
    assert mapped_framework_libs(hub.pid) == set()
    worker = hub.worker_pids()
    assert any(mapped_framework_libs(pid) for pid in worker)


def test_structured_log_lines(hub):
    events = [json.loads(line) for line in hub.logs().splitlines() if line.startswith('{"ts"')]
    loads = [e for e in events if e["event"] == "load"]
    assert loads and {"model", "seconds", "memory_mb", "pid"} <= set(loads[0])
    assert any(e["event"] == "crash" and e["model"] == "beta" for e in events)


@pytest.mark.parametrize("start_method", ["template", "spawn"])
def test_eviction_returns_memory_to_the_os(tmp_path, start_method):
    write_model(tmp_path / "alpha", alloc_mb=256)
    with running_hub(*DEMO_ARGS, "--models-dir", str(tmp_path), "--idle-ttl", "1",
                     "--start-method", start_method) as hub:
        time.sleep(1.0)
        before = total_pss(hub.pid)
        hub.client().predict('{"value": 1}', api_name="/alpha")
        loaded = total_pss(hub.pid)
        deadline = time.monotonic() + 15
        # every process the hub started ends: the worker, and (template mode) its idle template
        while psutil.Process(hub.pid).children(recursive=True) and time.monotonic() < deadline:
            time.sleep(0.25)
        assert psutil.Process(hub.pid).children(recursive=True) == []
        after = total_pss(hub.pid)
    assert loaded - before >= 200 * 2**20
    assert after - before < 30 * 2**20, (before, loaded, after)


def test_bad_demo_folder_fails_fast_with_a_message(tmp_path):
    demos = tmp_path / "mydemos"
    (demos / "broken").mkdir(parents=True)
    (demos / "broken" / "__init__.py").write_text("X = 1\n")
    with pytest.raises(RuntimeError, match="has no SPEC"):
        start_hub("--demos-dir", str(demos), timeout=30)


@pytest.mark.parametrize("copies", [1, 2])
def test_full_queue_answers_busy_instead_of_growing(copies):
    # Gradio's bound on the whole queue, met by one client: no per-visitor limit (tests/test_fair.py)
    with running_hub(*DEMO_ARGS, "--queue-size", "1", "--max-copies", str(copies), "--per-client-queue", "0") as hub:
        client = hub.client()
        client.predict('{"op": "sleep", "seconds": 0.2}', api_name="/alpha")  # calls long enough for a copy
        jobs = []
        for _ in range(8):  # a breath apart, so Gradio has moved the last join off its queue (a busy
            jobs.append(client.submit('{"op": "sleep", "seconds": 1}', api_name="/alpha"))  # machine
            time.sleep(0.05)  # lost that race: 2 answers instead of 5 in one full-suite run)
        outcomes, pids = [], set()
        for job in jobs:
            try:
                pids.add(job.result()["pid"])
                outcomes.append("ok")
            except Exception as exc:  # noqa: BLE001 - the message is the point
                outcomes.append(str(exc))
        replicas = hub.get("/metrics")[1]
        status = hub.get("/")[0]
    # per copy one running and one staged in its socket (a worker process runs one call at a
    # time, whatever the spec asks; a busy model gets up to --max-copies processes) + 1 queued;
    # the others are told at once instead of waiting, unseen, in a lock behind the workers
    assert outcomes.count("ok") == 2 * copies + 1
    assert all("Queue is full! Please try again" in o for o in outcomes if o != "ok")
    assert len(pids) == copies  # the second copy answered too
    assert f'demohub_model_replicas{{model="alpha"}} {copies}.0' in replicas
    assert status == 200  # the page is still served beside a full queue


def test_a_demo_whose_tab_breaks_does_not_stop_the_hub(tmp_path):
    demos = tmp_path / "otherdemos"
    for name, tab in (("gamma", "raise RuntimeError('tab exploded')\n"), ("delta", "def build(ctx):\n    pass\n")):
        (demos / name).mkdir(parents=True)
        (demos / name / "__init__.py").write_text(
            "from demohub.spec import DemoSpec\n"
            f"SPEC = DemoSpec(name='{name}', title='{name.title()}', description='', "
            f"runtime='otherdemos.{name}.runtime', tab='otherdemos.{name}.tab')\n")
        (demos / name / "tab.py").write_text(tab)
    with running_hub("--demos-dir", str(demos)) as hub:
        assert hub.get("/")[0] == 200
        assert "could not be built" in hub.get("/config")[1]
        assert '"event": "tab_failed", "model": "gamma"' in hub.logs()


def test_model_tracebacks_reach_the_log_and_status_never_the_client(hub):
    client = hub.client()
    with pytest.raises(AppError) as caught:
        client.predict('{"op": "error"}', api_name="/alpha")
    message = str(caught.value)
    assert "failed on this request" in message
    assert "RuntimeError" not in message and "Traceback" not in message and ".py" not in message
    logged = [json.loads(line) for line in hub.logs().splitlines() if '"predict_error"' in line]
    assert logged and "Traceback" in logged[-1]["error"] and "echo_runtime.py" in logged[-1]["error"]
    assert client.predict('{"value": 9}', api_name="/alpha")["echo"] == 9
