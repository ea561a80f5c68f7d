"""The Ray backend against a real Ray: a one-node Ray on 127.0.0.1 (dashboard
off, bounded object store, its own auth token), real hubs started with
`--backend ray`, real gradio_client calls, and Serve's own view of what runs.

Runs in its own pytest process (see the Makefile): this process connects to
the cluster as a second Ray driver to check what the hub claims.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from gradio_client.exceptions import AppError

from demohub.backends.ray import APP_PREFIX, LocalRay, node_model_dir
from support import PROJECT_ROOT, TEST_DEMOS, mapped_framework_libs, running_hub

pytestmark = pytest.mark.timeout(240)

IDLE_TTL = 3


@pytest.fixture(scope="module")
def cluster():
    """One local Ray for the module; this process is a driver on it too."""
    head = LocalRay.start(num_cpus=2, object_store_bytes=100 * 2**20)
    os.environ.update(head.env)
    os.environ["RAY_ENABLE_AUTO_CONNECT"] = "0"
    import ray

    try:
        ray.init(address=head.address, namespace="demohub-tests", log_to_driver=False,
                 configure_logging=False)
        yield head
    finally:
        ray.shutdown()
        head.stop()


def serve_details() -> dict:
    import ray
    from ray.serve.context import _get_global_client

    return ray.get(_get_global_client()._controller.get_serve_instance_details.remote(), timeout=10)


def actor_options(app: str) -> dict:
    """The ray_actor_options Serve deployed `app`'s replicas with."""
    dep = serve_details()["applications"][app]["deployments"]["model"]
    return dep["deployment_config"]["ray_actor_options"]


def serve_apps() -> dict:
    """Serve's own view: app name -> [(state, pid, actor name)] of its replicas."""
    details = serve_details()
    out = {}
    for name, app in (details.get("applications") or {}).items():
        if not name.startswith(APP_PREFIX):
            continue
        reps = []
        for dep in app["deployments"].values():
            for r in dep["replicas"]:
                state = getattr(r["state"], "value", r["state"])
                reps.append((str(state), r.get("pid"), r.get("actor_name")))
        out[name] = reps
    return out


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def metric(hub, metric_name: str, **labels) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in hub.get("/metrics")[1].splitlines():
        if line.startswith(f"{metric_name}{{{want}}}"):
            return float(line.rsplit(" ", 1)[1])
    return None


def connect_serve():
    from ray import serve

    serve.start(proxy_location="Disabled")  # attaches to the hub's Serve controller


@pytest.fixture(scope="module")
def hub(cluster, tmp_path_factory):
    """alpha as a placeholder; beta from a folder whose model fails to load."""
    broken = tmp_path_factory.mktemp("broken-beta")
    (broken / "config.json").write_text(json.dumps({"fail_load": True}))
    with running_hub("--backend", "ray", "--ray-address", cluster.address, "--demos-dir", str(TEST_DEMOS),
                     "--idle-ttl", str(IDLE_TTL), "--model", f"beta={broken}", env=cluster.env,
                     timeout=120) as server:
        connect_serve()
        yield server


def submit_with_progress(client, request: dict, api_name: str):
    job = client.submit(json.dumps(request), api_name=api_name)
    seen = set()
    deadline = time.monotonic() + 120
    while not job.done() and time.monotonic() < deadline:
        status = job.status()
        for unit in status.progress_data or ():
            seen.add(unit.desc)
        time.sleep(0.05)
    return job, seen


def status_row(hub, model: str) -> dict:
    """The Status tab's table row for `model`, from the page's own (un-queued) refresh."""
    import httpx

    deps = json.loads(hub.get("/config")[1])["dependencies"]
    for dep in deps:  # the page's refreshes on load; the Status tab's takes (watching, drawn)
        if dep.get("queue") is not False or not any(t[1] == "load" for t in dep["targets"]):
            continue
        data = [False, "{}"][:len(dep.get("inputs") or [])]
        reply = httpx.post(hub.url + "gradio_api/run/predict", timeout=60,
                           json={"data": data, "fn_index": dep["id"], "session_hash": "ray-status"}).json()
        for value in reply.get("data") or []:
            if isinstance(value, dict) and "where" in (value.get("headers") or []):
                rows = [dict(zip(value["headers"], row)) for row in value["data"]]
                return next(r for r in rows if r["model"] == model)
    raise AssertionError("no refresh of the page returned the status table")


def test_first_request_scales_zero_to_one_with_progress(hub):
    assert f"{APP_PREFIX}alpha" not in serve_apps()  # nothing deployed before the first request
    job, seen = submit_with_progress(hub.client(), {"op": "echo", "value": 7}, "/alpha")
    result = job.result(timeout=5)
    assert result["echo"] == 7 and result["trained"] is False  # the placeholder, built on the replica
    assert any(d and d.startswith("loading alpha model") for d in seen), seen
    replicas = serve_apps()[f"{APP_PREFIX}alpha"]
    assert [(s, pid) for s, pid, _ in replicas] == [("RUNNING", result["pid"])]  # answered by the Serve replica
    assert result["pid"] not in [p.pid for p in psutil.Process(hub.pid).children(recursive=True)]
    assert metric(hub, "demohub_model_memory_bytes", model="alpha") > 10 * 2**20
    wait_for(lambda: metric(hub, "demohub_model_replicas", model="alpha") == 1, 10,
             "/metrics to show the running replica")
    # the Status tab says where it runs, read from Serve: replica state, node, local pid
    row = status_row(hub, "alpha")
    assert row["where"].startswith("ray: 1 running") and " on node " in row["where"], row
    assert str(result["pid"]) in row["where"] and row["memory"] != "–"
    assert metric(hub, "demohub_shared_process_memory_bytes", process="ray: raylet") > 0
    assert f"{APP_PREFIX}beta" not in serve_apps()  # the other demo stays at zero
    first_ask = actor_options(f"{APP_PREFIX}alpha")
    assert first_ask["num_cpus"] == 1 and not first_ask.get("memory")  # no measurement yet
    assert not mapped_framework_libs(hub.pid)


def test_framework_objects_are_refused_before_reaching_the_hub(hub):
    client = hub.client()
    with pytest.raises(AppError, match="result the hub cannot use"):
        client.predict(json.dumps({"op": "torch"}), api_name="/alpha")
    assert not mapped_framework_libs(hub.pid)  # the replica had torch; the hub never loaded it
    assert client.predict(json.dumps({"op": "echo", "value": 1}), api_name="/alpha")["echo"] == 1


def test_input_and_model_errors_keep_their_sentences(hub):
    client = hub.client()
    with pytest.raises(AppError, match="that input makes no sense: 5"):
        client.predict(json.dumps({"op": "input_error", "value": 5}), api_name="/alpha")
    with pytest.raises(AppError, match="failed on this request"):
        client.predict(json.dumps({"op": "error"}), api_name="/alpha")
    assert client.predict(json.dumps({"op": "echo", "value": 2}), api_name="/alpha")["echo"] == 2


def test_idle_model_scales_back_to_zero_and_returns(hub):
    client = hub.client()
    pid = client.predict(json.dumps({"op": "echo", "value": 3}), api_name="/alpha")["pid"]
    time.sleep(1.5)  # a sweep measures the replica
    last_measured = metric(hub, "demohub_model_memory_bytes", model="alpha")
    wait_for(lambda: f"{APP_PREFIX}alpha" not in serve_apps(), IDLE_TTL + 30, "Serve to drop idle alpha")
    wait_for(lambda: not psutil.pid_exists(pid), 30, "the idle replica's process to end")
    assert metric(hub, "demohub_evictions_total", model="alpha", reason="idle") >= 1
    assert metric(hub, "demohub_model_memory_bytes", model="alpha") == 0
    assert metric(hub, "demohub_model_replicas", model="alpha") == 0
    again = client.predict(json.dumps({"op": "echo", "value": 4}), api_name="/alpha")
    assert again["echo"] == 4 and again["pid"] != pid
    # the new deployment asks Ray for memory sized from the last one's measured PSS (x1.25)
    asked = actor_options(f"{APP_PREFIX}alpha")["memory"]
    assert 1.1 * last_measured < asked < 1.4 * last_measured, (asked, last_measured)


def test_killed_replica_fails_its_request_clearly_and_the_next_recovers(hub):
    import ray

    client = hub.client()
    first = client.predict(json.dumps({"op": "echo", "value": 0}), api_name="/alpha")
    (_, pid, actor_name), = serve_apps()[f"{APP_PREFIX}alpha"]
    assert pid == first["pid"]
    crashes = metric(hub, "demohub_crashes_total", model="alpha")
    job = client.submit(json.dumps({"op": "sleep", "seconds": 20}), api_name="/alpha")
    time.sleep(2.0)  # the request is inside predict on the replica
    ray.kill(ray.get_actor(actor_name, namespace="serve"))
    started = time.monotonic()
    with pytest.raises(AppError, match="replica died while serving this request.*restarting"):
        job.result(timeout=60)
    assert time.monotonic() - started < 15  # the error, not the 20 s sleep
    after = client.predict(json.dumps({"op": "echo", "value": 9}), api_name="/alpha")
    assert after["echo"] == 9 and after["pid"] != pid
    assert metric(hub, "demohub_crashes_total", model="alpha") == crashes + 1
    assert '"event": "crash", "model": "alpha"' in hub.logs()


def test_public_api_is_the_same_as_the_spawn_backend(hub):
    ray_api = hub.client().view_api(print_info=False, return_format="dict")
    with running_hub("--demos-dir", str(TEST_DEMOS)) as spawn_hub:
        spawn_api = spawn_hub.client().view_api(print_info=False, return_format="dict")
        assert spawn_hub.get("/healthz")[0] == 200
    assert ray_api["named_endpoints"] == spawn_api["named_endpoints"]
    assert set(ray_api["named_endpoints"]) == {"/alpha", "/beta"}
    assert not ray_api.get("unnamed_endpoints")
    assert hub.get("/healthz")[0] == 200


def test_load_failure_is_reported_and_deletes_the_application(hub):
    client = hub.client()
    with pytest.raises(AppError, match="could not be loaded"):
        client.predict(json.dumps({"op": "echo"}), api_name="/beta")
    assert "configured to fail at load" in hub.logs()  # the operator sees why; the visitor does not
    wait_for(lambda: f"{APP_PREFIX}beta" not in serve_apps(), 30, "the failed application to go")
    assert client.predict(json.dumps({"op": "echo", "value": 1}), api_name="/alpha")["echo"] == 1


def _client_server_log(cluster) -> str:
    """The tail of the head's Ray Client server logs: where a stuck `ray://` handshake shows why."""
    logs = sorted(Path(cluster.temp_dir).glob("session_*/logs/ray_client_server*"))
    return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:] for p in logs)


@contextlib.contextmanager
def _client_hub(cluster, *args: str):
    """A hub connected through Ray Client. Ray's own handshake has waits without
    a deadline (its proxy waits for a per-client server with none); the hub gives
    up on it with a sentence after --ray-connect-timeout, and this retries that
    once, so one stuck handshake inside Ray is told apart from a hub that cannot connect."""
    hub_args = ("--backend", "ray", "--ray-address", cluster.client_address, "--ray-connect-timeout", "60", *args)
    with contextlib.ExitStack() as stack:
        try:
            hub = stack.enter_context(running_hub(*hub_args, env=cluster.env, timeout=120))
        except RuntimeError as exc:
            if "did not finish connecting" not in str(exc):
                raise
            print(f"Ray Client handshake stuck once; retrying.\n{_client_server_log(cluster)}")
            hub = stack.enter_context(running_hub(*hub_args, env=cluster.env, timeout=120))
        yield hub


def test_questions_answers_end_to_end_through_ray_client(cluster):
    """The real questions demo, with the hub as a Ray Client (`ray://`), as a
    Space's front or the deploy manifest's front talks to a cluster."""
    model = PROJECT_ROOT / "models" / "questions"
    with _client_hub(cluster, "--only", "questions", "--model", f"questions={model}") as hub:
        connect_serve()
        coarse, fine, summary, result = hub.client().predict("What is the capital of France?",
                                                             api_name="/questions")
        assert coarse["label"] == "location (LOC)" and fine["label"].startswith("LOC:")
        assert abs(sum(result["coarse"].values()) - 1) < 1e-3
        ((state, pid, _),) = serve_apps()[f"{APP_PREFIX}questions"]
        assert state == "RUNNING" and "libtorch" in " ".join(mapped_framework_libs(pid))
        assert not mapped_framework_libs(hub.pid)  # torch and tokenizers stayed on the replica
        # The proxy forks this session's server from a busy gRPC thread; with gRPC's
        # post-fork handlers on, that child could segfault before exec and leave the
        # handshake waiting forever (see LocalRay's head environment).
        servers = _client_servers(cluster)
        assert {"proxy", "specific-server"} <= set(servers), servers
        assert all(env.get("GRPC_ENABLE_FORK_SUPPORT") == "0" for env in servers.values())


def _client_servers(cluster) -> dict[str, dict[str, str]]:
    """The head's Ray Client server processes by mode, each with its environment."""
    found = {}
    for proc in psutil.Process(cluster.pid).children(recursive=True):
        try:
            mode = next((a.split("=", 1)[1] for a in proc.cmdline() if a.startswith("--mode=")), None)
            if mode and "ray.util.client.server" in proc.cmdline():
                found[mode] = proc.environ()
        except psutil.Error:
            continue
    return found


def _listening(pids: set[int]) -> list[tuple[str, int]]:
    out = []
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            out.append((conn.laddr.ip, conn.laddr.port))
    return out


def test_hub_without_address_runs_its_own_loopback_ray_and_ends_it_even_if_killed():
    """No --ray-address: the hub starts a one-node Ray itself, every port on
    127.0.0.1, and no Ray process outlives the hub, even one killed with SIGKILL."""
    with running_hub("--backend", "ray", "--demos-dir", str(TEST_DEMOS), "--only", "alpha",
                     timeout=150) as hub:
        out = hub.client().predict(json.dumps({"op": "echo", "value": 5}), api_name="/alpha")
        assert out["echo"] == 5
        tree = {p.pid for p in psutil.Process(hub.pid).children(recursive=True)}
        assert out["pid"] in tree  # the replica runs under the hub's own Ray
        ports = _listening(tree | {hub.pid})
        assert ports and all(ip in ("127.0.0.1", "::ffff:127.0.0.1") for ip, _ in ports), ports
        temp_dirs = {Path(c.split("--temp-dir", 1)[1].split()[0]) for c in
                     (" ".join(psutil.Process(p).cmdline()) for p in tree if _running(p)) if "--temp-dir" in c}
        assert temp_dirs
        hub.proc.kill()  # no cleanup code runs in the hub
        hub.proc.wait(timeout=10)
    wait_for(lambda: not [p for p in tree if _running(p)], 45, "the hub's Ray processes to end")
    wait_for(lambda: not any(d.exists() for d in temp_dirs), 15, "the local Ray's temp folder to go")


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_node_without_the_hubs_snapshot_downloads_the_same_revision(tmp_path, monkeypatch):
    """What a replica does with a Hub model on a node that lacks the hub's
    snapshot path: the same pinned revision, into that node's own cache
    (the real huggingface_hub client against tests/fakehub.py)."""
    from fakehub import FakeHub

    fake = FakeHub().start()
    try:
        sha = fake.add_commit("org/alpha", {"config.json": b'{"marker": "pinned"}'})
        fake.add_commit("org/alpha", {"config.json": b'{"marker": "later"}'})  # main moves on
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "node-cache"))
        on_the_hub = Path("/elsewhere/hf/hub/models--org--alpha/snapshots") / sha  # absent here
        got = node_model_dir(str(on_the_hub))
        assert got.is_relative_to(tmp_path / "node-cache")
        assert json.loads((got / "config.json").read_text())["marker"] == "pinned"
        assert node_model_dir(str(tmp_path)) == tmp_path  # a folder that exists is used as is
        assert node_model_dir("/no/such/folder") == Path("/no/such/folder")  # left for load() to report
    finally:
        fake.stop()


def test_a_listener_that_is_not_ray_fails_with_a_sentence_at_the_connect_deadline():
    """Something accepts connections but never speaks Ray (a wrong port, a stuck
    head): `ray.init` would wait minutes; the hub gives up at --ray-connect-timeout."""
    import socket
    import subprocess
    import sys

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        for address in (f"ray://127.0.0.1:{port}", f"127.0.0.1:{port}"):
            started = time.monotonic()
            done = subprocess.run([sys.executable, str(PROJECT_ROOT / "hub.py"), "--backend", "ray",
                                   "--ray-address", address, "--ray-connect-timeout", "3",
                                   "--demos-dir", str(TEST_DEMOS), "--port", "0"],
                                  capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT)
            assert done.returncode == 2, done.stderr
            assert f"Ray at {address} accepts connections but did not finish connecting within 3 s" in done.stderr
            assert "Traceback" not in done.stderr and "SIGTERM handler" not in done.stderr
            assert time.monotonic() - started < 30


@pytest.mark.parametrize("address, says", [("127.0.0.1:1", "no Ray cluster answers at 127.0.0.1:1"),
                                           ("ray://127.0.0.1:1", "no Ray cluster answers"),
                                           ("nonsense", "is not an address")])
def test_unreachable_ray_address_is_one_sentence_in_seconds(address, says):
    import subprocess
    import sys

    started = time.monotonic()
    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "hub.py"), "--backend", "ray", "--ray-address",
                           address, "--demos-dir", str(TEST_DEMOS), "--port", "0"],
                          capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT)
    assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr
    assert time.monotonic() - started < 30


def test_a_replica_on_another_node_runs_there_and_reports_its_own_memory(cluster):
    """Two raylets on 127.0.0.1, the closest to a multi-node cluster this machine
    allows: the head (where the hub's driver runs) has its CPUs taken, so Serve
    places the replica on the added node. The hub reads /proc only for replicas
    on its own node, so that replica reports its memory itself; a second hub on
    the same cluster keeps apart by its application prefix."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    head_node = ray.get_runtime_context().get_node_id()  # this test process is a driver on the head
    node = cluster.add_node(num_cpus=1)

    @ray.remote(num_cpus=2)
    class HoldTheHead:
        def ready(self) -> bool:
            return True

    hold = HoldTheHead.options(scheduling_strategy=NodeAffinitySchedulingStrategy(head_node, soft=False)).remote()
    try:
        assert ray.get(hold.ready.remote(), timeout=90)  # waits for other hubs' replicas to scale to zero
        with running_hub("--backend", "ray", "--ray-address", cluster.address, "--demos-dir", str(TEST_DEMOS),
                         "--only", "alpha", "--ray-app-prefix", "second-hub-", env=cluster.env,
                         timeout=120) as hub:
            connect_serve()
            out = hub.client().predict(json.dumps({"op": "echo", "value": 3}), api_name="/alpha")
            assert out["echo"] == 3
            app = serve_details()["applications"]["second-hub-alpha"]
            ((replica,),) = [dep["replicas"] for dep in app["deployments"].values()]
            assert replica["node_id"] != head_node and replica["pid"] == out["pid"]
            assert out["pid"] in {p.pid for p in psutil.Process(node.pid).children(recursive=True)}
            with urllib.request.urlopen(hub.url + "metrics", timeout=30) as resp:
                metrics = resp.read().decode()
            memory = [line for line in metrics.splitlines()
                      if line.startswith('demohub_model_memory_bytes{model="alpha"}')]
            assert memory and float(memory[0].split()[-1]) > 10 * 2**20, memory
            # not a replica the hub could read in /proc as its own node's: the figure is the replica's report
            loads = [json.loads(line) for line in hub.logs().splitlines()
                     if line.startswith('{"ts"') and '"event": "load"' in line]
            assert loads and "on node" in loads[-1]["where"] and ", pid " not in loads[-1]["where"], loads
        wait_for(lambda: "second-hub-alpha" not in serve_details()["applications"], 30,
                 "the second hub's application to go with it")
    finally:
        ray.kill(hold)
        cluster.stop_node(node)
    assert not node.temp_dir.exists()


def test_ports_for_a_local_ray_are_picked_outside_the_kernels_ephemeral_range():
    """A port picked with bind(0) can be taken by any of Ray's own processes before
    Ray binds it (a CI run lost its head that way); ours come from below that range."""
    from demohub.backends.ray.head import _ephemeral_low, _free_port

    picks = {_free_port() for _ in range(50)}
    assert all(24000 < port < _ephemeral_low() for port in picks) and len(picks) > 10


def test_a_head_whose_port_is_taken_while_it_starts_is_started_again(monkeypatch):
    import socket

    import demohub.backends.ray.head as head_module

    started = time.time()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    picks = iter([taken.getsockname()[1]])  # the first head's Ray Client port: already in use
    real = head_module._free_port
    monkeypatch.setattr(head_module, "_free_port", lambda: next(picks, None) or real())
    head = LocalRay.start(num_cpus=1, timeout=120)
    try:
        port = int(head.client_address.rsplit(":", 1)[1])
        assert port != taken.getsockname()[1] and head.proc.poll() is None
        assert any(c.laddr.port == port and c.status == psutil.CONN_LISTEN
                   for c in psutil.net_connections(kind="tcp"))
    finally:
        head.stop()
        taken.close()
    assert not head.temp_dir.exists()
    # nothing of the first head (its agents outlive it unless ended) nor of the second is left
    wait_for(lambda: not [p for p in psutil.process_iter(["name", "create_time"]) if p.info["name"] and
                          p.info["name"].startswith("ray::") and p.info["create_time"] >= started],
             15, "every Ray process this test started to go")


GIVEN_UP_DEPLOY = '''
import json, sys, time
from pathlib import Path
from demohub.backends.ray import RayBackend
from demohub.discovery import discover

address, demos, prefix, model_dir = sys.argv[1:5]
backend = RayBackend(address, app_prefix=prefix, idle_ttl_s=None)
spec = next(s for s in discover(Path(demos)) if s.name == "alpha")
first = backend.start(spec, Path(model_dir), placeholder=True)
first.wait_ready(120)
backend.delete(first.app_name, wait=0.0)  # evicted: Serve deletes it in the background
# Its thread waits for the delete (Serve takes a few hundred ms), and the registry gives
# up on this load meanwhile: the kill lands before the thread could deploy.
again = backend.start(spec, Path(model_dir), placeholder=True)
again.kill("load failed")
again._deploy.join(60)
deadline = time.monotonic() + 30
while again.app_name in backend.apps(max_age=0.0) and time.monotonic() < deadline:
    time.sleep(0.2)
time.sleep(2.0)  # room for a late deploy to show up
print(json.dumps({"thread_ended": not again._deploy.is_alive(),
                  "apps": sorted(backend.apps(max_age=0.0))}))
'''


def test_a_load_given_up_while_its_application_is_deleted_deploys_nothing(cluster, tmp_path):
    """A `ray-deploy-<demo>` thread waits for the application being deleted (an
    eviction a moment ago) before deploying; if its handle is killed meanwhile,
    it ends without deploying an application no handle holds (issue 29)."""
    import subprocess
    import sys

    prefix = "demohub-given-up-"
    out = subprocess.run([sys.executable, "-c", GIVEN_UP_DEPLOY, cluster.address, str(TEST_DEMOS), prefix,
                          str(tmp_path / "alpha")],
                         cwd=PROJECT_ROOT, env={**os.environ, **cluster.env}, capture_output=True, text=True,
                         timeout=200)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["thread_ended"]
    assert seen["apps"] == [], f"an application was deployed for a handle that was killed: {seen}"
    assert not [name for name in serve_apps() if name.startswith(prefix)]


LOCKS_OVER_RAY = '''
import json, sys, tempfile, threading
from pathlib import Path
import pytest
sys.path.insert(0, "tests")
from lockcheck import Harness
from demohub.backends.ray import RayBackend
from demohub.discovery import discover
from demohub.errors import WorkerFailed
from demohub.registry import Limits, Registry
from demohub.sources import ModelSources

address, demos, prefix = sys.argv[1:4]
harness, patch = Harness(), pytest.MonkeyPatch()
harness.install(patch, ray=True)
specs = discover(Path(demos))
tmp = Path(tempfile.mkdtemp(prefix="lock-ray-"))
backend = RayBackend(address, app_prefix=prefix, idle_ttl_s=None)
registry = Registry(specs, ModelSources(specs, tmp / "models", tmp / "placeholders", {}),
                    Limits(max_models=1, idle_ttl_s=None), backend=backend)
registry.start(interval_s=0.2)  # the sweeper asks alive() and refreshes Serve's view meanwhile
seen = {}
try:
    seen["alpha"] = registry.predict("alpha", {"value": 1})["echo"]
    # two at once while beta evicts alpha: loads, calls and a delete race each other
    answers = []
    calls = [threading.Thread(target=lambda n=n: answers.append(registry.predict(n, {"value": 2})))
             for n in ("beta", "beta", "alpha")]
    for t in calls:
        t.start()
    for t in calls:
        t.join(120)
    seen["raced"] = len(answers)
    try:  # a replica that dies mid-call: the registry forgets it and the next call redeploys
        registry.predict("alpha", {"op": "crash"})
    except WorkerFailed as exc:
        seen["crash"] = str(exc)
    seen["after_crash"] = registry.predict("alpha", {"value": 3})["echo"]
    seen["evicted"] = registry.evict("alpha")
finally:
    registry.close()
    backend.close()
    patch.undo()
print(json.dumps({"seen": seen, "violations": list(dict.fromkeys(harness.violations))}))
'''


def test_the_registry_over_ray_holds_no_coordinating_lock_across_a_ray_call(cluster):
    """The lock harness (tests/lockcheck.py) over a real registry driving the Ray
    backend: loads, an eviction racing two loads, a replica that dies mid-call,
    the sweeper, close. No Ray call (nor any other blocking call) may run while
    the registry's or the Ray backend's lock is held (issue 29)."""
    import subprocess
    import sys

    prefix = "demohub-locks-"
    out = subprocess.run([sys.executable, "-c", LOCKS_OVER_RAY, cluster.address, str(TEST_DEMOS), prefix],
                         cwd=PROJECT_ROOT, env={**os.environ, **cluster.env}, capture_output=True, text=True,
                         timeout=220)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["seen"]["alpha"] == 1 and report["seen"]["raced"] == 3, report["seen"]
    assert "died" in report["seen"].get("crash", "") and report["seen"]["after_crash"] == 3, report["seen"]
    assert not report["violations"], (f"{len(report['violations'])} blocking call(s) under a coordinating "
                                      "lock:\n\n" + "\n\n".join(report["violations"][:5]))
    assert not [name for name in serve_apps() if name.startswith(prefix)]


def test_search_answers_through_ray_with_its_index_on_the_replica(cluster):
    """The fourth demo on the Ray backend: the shipped WordNet index and encoder load
    on a replica (faiss, torch and tokenizers there, not in the hub) and answer the
    same ranked list as through a local worker."""
    model = PROJECT_ROOT / "models" / "search"
    if not (model / "config.json").is_file():
        pytest.skip(f"no search model folder at {model}")
    with running_hub("--backend", "ray", "--ray-address", cluster.address, "--only", "search",
                     "--model", f"search={model}", env=cluster.env, timeout=120) as hub:
        connect_serve()
        results = hub.client().predict("fear of small closed spaces", 3, "any", api_name="/search")
        assert len(results) == 3 and "claustrophobia" in results[0]["words"]
        ((state, pid, _),) = serve_apps()[f"{APP_PREFIX}search"]
        assert state == "RUNNING" and "_swigfaiss.abi3.so" in mapped_framework_libs(pid)
        assert not mapped_framework_libs(hub.pid)
