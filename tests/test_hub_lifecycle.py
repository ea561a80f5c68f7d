"""hub.py's life as an operator sees it: it says it serves only once it does, an
address it cannot serve ends it at once with one sentence, a second SIGTERM
during shutdown does not cut the cleanup short (issue 29), and a restarted hub
tells its first visitor what the last load really took (issue 33)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

from support import PROJECT_ROOT, TEST_DEMOS, free_port, gone, run_hub, start_hub


def test_a_port_in_use_ends_the_hub_before_it_claims_to_serve(tmp_path):
    """The old hub printed "demo hub: … on http://…" first and uvicorn's errno 98 after."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        started = time.monotonic()
        done = run_hub("--host", "127.0.0.1", "--port", str(port), "--cache-dir", str(tmp_path))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"hub.py: error: --port {port}: already in use on 127.0.0.1; stop what holds it or choose another port"]
    assert time.monotonic() - started < 20
    done = run_hub("--host", "10.254.254.254", "--port", "0", "--cache-dir", str(tmp_path))
    assert done.returncode == 2 and "not an address of this machine" in done.stderr, done.stderr


def test_the_startup_line_comes_once_the_socket_answers(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(PYTHONUNBUFFERED="1", GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "hub.py"), "--demos-dir", str(TEST_DEMOS),
                             "--host", "127.0.0.1", "--port", str(port), "--cache-dir", str(tmp_path)],
                            cwd=PROJECT_ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert line.strip() == f"demo hub: 2 demos (alpha, beta) on http://127.0.0.1:{port}", line
        with socket.create_connection(("127.0.0.1", port), timeout=2):  # answering when it says so
            pass
    finally:
        proc.terminate()
        rest = proc.communicate(timeout=30)[1]
    assert proc.returncode == 128 + 15 and rest.strip().splitlines()[-1] == "demo hub: stopped", rest


def queue_without_listening(hub, api_name: str, payload: str) -> None:
    """Put a call in Gradio's queue and walk away: no stream open, so uvicorn's
    graceful shutdown has no connection to wait for while the call runs."""
    config = json.loads(hub.get("/config")[1])
    dep = next(d for d in config["dependencies"] if d.get("api_name") == api_name)
    body = json.dumps({"data": [payload], "fn_index": dep["id"], "session_hash": uuid.uuid4().hex[:10],
                       "event_data": None, "trigger_id": None}).encode()
    request = urllib.request.Request(hub.url + "gradio_api/queue/join", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert "event_id" in json.loads(answer.read())


def test_a_second_sigterm_during_shutdown_does_not_cut_the_cleanup_short(tmp_path):
    """The old handler raised SystemExit: the second signal unwound registry.close()
    while it waited for a busy worker, so the hub exited with that worker still
    running (it noticed on its own, up to a second later). Now the hub ends and
    reaps its workers before it exits, however many signals arrive. alpha takes 2 s to
    load, as a model on a busy machine does: the signal must come once it is serving."""
    slow = tmp_path / "slow-alpha"
    slow.mkdir()
    (slow / "config.json").write_text(json.dumps({"trained": True, "load_sleep": 2}))
    hub = start_hub("--demos-dir", str(TEST_DEMOS), "--start-method", "spawn", "--model", f"alpha={slow}",
                    cache_dir=tmp_path)
    try:
        queue_without_listening(hub, "alpha", '{"op": "sleep", "seconds": 30}')
        deadline = time.monotonic() + 30
        while not hub.worker_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = hub.worker_pids()
        assert workers
        # loaded (on a busy machine a load can take seconds; a worker killed while loading is a
        # failed load, not the busy worker this test is about), then the call is inside it
        while '"event": "load", "model": "alpha"' not in hub.logs():
            assert time.monotonic() < deadline and hub.proc.poll() is None, hub.logs()
            time.sleep(0.05)
        time.sleep(1.0)  # stopping the worker politely now takes the whole grace
        os.kill(hub.pid, signal.SIGTERM)
        while '"reason": "shutdown"' not in hub.logs():  # registry.close() has begun
            assert time.monotonic() < deadline + 30 and hub.proc.poll() is None, hub.logs()
            time.sleep(0.01)
        os.kill(hub.pid, signal.SIGTERM)
        try:
            hub.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # the old hub: its busy worker was never ended
            raise AssertionError(f"the hub did not exit within 20 s of its second SIGTERM:\n{hub.logs()}") from None
        still_running = [pid for pid in workers if not gone(pid)]
    finally:
        hub.stop()
    assert still_running == [], f"the hub exited before ending {still_running}:\n{hub.logs()}"
    assert hub.proc.returncode == 128 + signal.SIGTERM
    assert hub.logs().strip().splitlines()[-1] == "demo hub: stopped", hub.logs()


def cold_call_progress(hub, payload: str = '{"value": 1}') -> set[str]:
    job = hub.client().submit(payload, api_name="/alpha")
    seen = set()
    while not job.done():
        for unit in job.status().progress_data or []:
            if unit.desc:
                seen.add(unit.desc)
        time.sleep(0.05)
    job.result()
    return seen


def load_seconds(logs: str) -> list[float]:
    return [json.loads(line)["seconds"] for line in logs.splitlines()
            if line.startswith("{") and json.loads(line).get("event") == "load"]


def test_a_restarted_hub_tells_its_first_visitor_what_the_last_load_took(tmp_path):
    models = tmp_path / "models"
    (models / "alpha").mkdir(parents=True)
    (models / "alpha" / "config.json").write_text(json.dumps({"trained": True, "load_sleep": 1.5}))
    cache = tmp_path / "cache"
    args = ("--demos-dir", str(TEST_DEMOS), "--models-dir", str(models), "--only", "alpha")
    first = start_hub(*args, cache_dir=cache)
    try:
        seen = cold_call_progress(first)
    finally:
        first.stop()
    assert "loading alpha model (first load: no estimate yet)" in seen, seen  # not the SPEC's 5 s as a fact
    [measured] = load_seconds(first.logs())
    # the same load time: the file keeps 3 decimals, the log line 4 (1.50148 s is 1.501 there and 1.5015
    # here, which rounds on to 1.502), so they agree to a millisecond
    assert json.loads((cache / "measured.json").read_text())["alpha"]["seconds"] == pytest.approx(measured, abs=1e-3)

    second = start_hub(*args, cache_dir=cache)
    try:
        seen = cold_call_progress(second)
    finally:
        second.stop()
    told = [d for d in seen if d.startswith("loading alpha model")]
    assert told and all(d.endswith(f"(its last load took {measured:.1f} s)") for d in told), (measured, seen)
