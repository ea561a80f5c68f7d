"""The hub side of the Ray Serve backend: each demo is one Serve application whose replicas
load the demo's own runtime (`load`/`predict`), placed by Ray on whichever node
has the CPU and memory the model needs.

The registry keeps its policy (lazy loads, idle TTL, LRU, budget): `start`
deploys the application and `stop` deletes it, so a demo has no replica until
its first request and none after its idle TTL. Serve does the rest: replicas
(1..max_replicas, autoscaled on queued requests), placement by `num_cpus` and
`memory`, restarts of a replica that died, and scaling to zero on its own
(`min_replicas=0`) if the hub that deployed it goes away.

What crosses between the hub and a replica is bytes we pickle ourselves:
Ray would otherwise cloudpickle return values and exceptions into the hub,
and unpickling a torch tensor imports torch. Results are unpickled with
`wire.loads_guarded`, and every replica-side exception becomes a message.

Ray is imported only inside functions, after the environment it reads at
import time is set (loopback-only node IP, auth token).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from demohub import device
from demohub.backends.local import wire
from demohub import policy
from demohub.backends import CallResult, LoadInfo, OneCopy, SharedProcess, Tick
from demohub.backends.ray.head import (HEAD_MODULE, LOOPBACK_ENV, PROJECT_ROOT, LocalRay, RayUnreachable,
                                       is_loopback, probe)
from demohub.backends.ray.replica import DemoReplica
from demohub.errors import InputError, ModelError, WorkerFailed, WorkerTimeout
from demohub.kit import cache
from demohub.memory import process_memory
from demohub.spec import DemoSpec

#: Serve application names are `<prefix><demo name>`; the deployment inside is "model".
APP_PREFIX = "demohub-"
DEPLOYMENT = "model"

#: Never start a Ray implicitly: after `ray.shutdown()` a Serve background thread
#: calling into Ray would otherwise start a fresh local cluster with default settings.
DRIVER_ENV = {"RAY_ENABLE_AUTO_CONNECT": "0"}

#: how long the hub waits for `ray.init` (and Serve) before it gives up with a sentence
CONNECT_TIMEOUT_S = 90.0
#: how often the hub asks a replica on another node for its memory, and how long it waits
REMOTE_MEMORY_EVERY_S = 10.0
REMOTE_MEMORY_TIMEOUT_S = 2.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Replica:
    """One replica as Serve reports it."""

    state: str
    pid: int | None
    node_id: str
    node_ip: str
    actor_name: str


@dataclass(frozen=True)
class AppView:
    """One of our applications as Serve reports it."""

    status: str
    message: str
    target: int
    replicas: tuple[Replica, ...]


def _text(value: Any) -> str:
    """Serve's details carry enums (ReplicaState.RUNNING); we keep their values."""
    return str(getattr(value, "value", value))


def _replica(r: dict) -> Replica:
    return Replica(state=_text(r.get("state")), pid=r.get("pid"), node_id=r.get("node_id") or "",
                   node_ip=r.get("node_ip") or "", actor_name=r.get("actor_name") or "")


def _app_views(details: dict) -> dict[str, AppView]:
    views = {}
    for app_name, app in (details.get("applications") or {}).items():
        dep = (app.get("deployments") or {}).get(DEPLOYMENT)
        if dep is None:
            continue
        views[app_name] = AppView(status=_text(app.get("status")),
                                  message=app.get("message") or dep.get("message") or "",
                                  target=int(dep.get("target_num_replicas") or 0),
                                  replicas=tuple(_replica(r) for r in dep.get("replicas") or ()))
    return views


class RayModel(OneCopy):
    """The hub's handle on one demo's Serve application."""

    def __init__(self, backend: "RayBackend", spec: DemoSpec, app_name: str, *,
                 handle: Any = None, app: Any = None):
        """A handle on an application Serve already runs (`handle`), or on one to
        deploy (`app`, a bound deployment): then its `ray-deploy-<demo>` thread asks
        Serve for it."""
        self.spec = spec
        self.app_name = app_name
        self._backend = backend
        self._deploy_error: BaseException | None = None
        self._ended: str | None = None
        self._replica_died = False
        self._handle: Any = handle
        self._started = time.monotonic()
        #: when a view of Serve last showed the application (alive() trusts only newer ones)
        self._seen_at = time.monotonic() if handle is not None else float("inf")
        #: what a replica last said of its own memory, and when (for replicas on other nodes)
        self._reported: tuple[float, dict[str, int]] = (0.0, {})
        self._deploy: threading.Thread | None = None
        if app is not None:
            self._deploy = threading.Thread(target=self._deploy_app, args=(app,), daemon=True,
                                            name=f"ray-deploy-{spec.name}")
            self._deploy.start()

    def _deploy_app(self, app: Any) -> None:
        """The `ray-deploy-<demo>` thread, owned by this handle: it ends once the
        application is asked for, or at once if the handle was ended meanwhile (a
        load the registry gave up on must not deploy an application no handle holds)."""
        from ray import serve

        try:
            # An application being deleted (an eviction a moment ago) must be gone
            # first: a handle made meanwhile would see the deployment as unavailable.
            deadline = time.monotonic() + self.spec.load_timeout_s
            while (self.app_name in self._backend.apps(max_age=0.0) and time.monotonic() < deadline
                   and self._ended is None):
                time.sleep(0.2)
            if self._ended is not None:
                return
            self._handle = serve._run(app, _blocking=False, name=self.app_name, route_prefix=None)
            if self._ended is not None:  # ended while it was being asked for
                self._backend.delete(self.app_name, wait=0.0)
        except BaseException as exc:  # noqa: BLE001 - reported by wait_ready
            self._deploy_error = exc

    # -- what it is ----------------------------------------------------------------

    def _view(self) -> AppView | None:
        return self._backend.apps().get(self.app_name)

    def _local(self, view: AppView | None) -> list[Replica]:
        """Its replicas with a process on this machine (any state but stopped)."""
        return [r for r in (view.replicas if view else ()) if r.pid and self._backend.is_local(r)
                and r.state not in ("STOPPING", "STOPPED")]

    @property
    def pid(self) -> int | None:
        local = self._local(self._view())
        return local[0].pid if local else None

    @property
    def copies(self) -> int:
        view = self._view()
        return 0 if view is None else sum(1 for r in view.replicas if r.state == "RUNNING")

    @property
    def where(self) -> str:
        view = self._view()
        if view is None:
            return "ray: not deployed"
        states: dict[str, int] = {}
        for r in view.replicas:
            states[r.state] = states.get(r.state, 0) + 1
        counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())) or "0 replicas"
        nodes = sorted({f"{r.node_id[:6]} ({r.node_ip})" for r in view.replicas if r.node_id})
        pids = [str(r.pid) for r in self._local(view)]
        text = f"ray: {counts} (target {view.target})"
        if nodes:
            text += " on node " + ", ".join(nodes)
        if pids:
            text += f", pid {', '.join(pids)}"
        return text

    def alive(self) -> bool:
        if self._ended is not None or self._replica_died or self._deploy_error is not None:
            return False
        if self._deploy is not None and self._deploy.is_alive():
            return True
        at, views = self._backend.cached_apps()
        view = views.get(self.app_name)
        if view is None:
            return at < self._seen_at  # gone only if a view newer than its last sighting says so
        return view.status not in ("DEPLOY_FAILED", "DELETING")

    def ended_by_hub(self) -> str | None:
        return self._ended

    def memory(self, metric: str) -> int:
        """PSS/USS/RSS of its replicas: read from /proc for those on this
        machine; for those on other nodes, what a replica reports of itself
        (asked at most every REMOTE_MEMORY_EVERY_S) times their number."""
        if self._ended is not None:
            return 0
        view = self._view()
        local = self._local(view)
        total = sum(process_memory(r.pid, metric) for r in local)
        remote = [r for r in (view.replicas if view else ()) if r.state == "RUNNING" and r not in local]
        if remote:
            total += self._replica_report().get(metric, 0) * len(remote)
        if total:
            self._backend.remember_memory(self.spec.name, total)
        return total

    def _replica_report(self) -> dict[str, int]:
        """One replica's own memory figures, refreshed by a short Ray call when
        older than REMOTE_MEMORY_EVERY_S; the last figures if the call fails."""
        at, report = self._reported
        if time.monotonic() - at < REMOTE_MEMORY_EVERY_S or self._handle is None:
            return report
        try:
            data = self._handle.options(method_name="memory").remote().result(timeout_s=REMOTE_MEMORY_TIMEOUT_S)
            if isinstance(data, dict):
                report = {k: int(v) for k, v in data.items() if k in ("pss", "uss", "rss")}
        except Exception:  # noqa: BLE001 - a busy or restarting replica: keep the last figures
            pass
        self._reported = (time.monotonic(), report)
        return report

    # -- talking to it ---------------------------------------------------------------

    def _wait_deployed(self, deadline: float, tick: Tick | None) -> Any:
        while self._deploy is not None and self._deploy.is_alive():
            if time.monotonic() > deadline:
                raise TimeoutError
            self._deploy.join(0.25)
            if tick:
                tick()
        if self._deploy_error is not None:
            raise ModelError(f"The {self.spec.name} model could not be deployed on Ray; the operator "
                             "can see why on the Status tab and in the server log.",
                             detail=f"{type(self._deploy_error).__name__}: {self._deploy_error}")
        return self._handle

    def wait_ready(self, timeout: float, tick: Tick | None = None) -> LoadInfo:
        name = self.spec.name
        deadline = time.monotonic() + timeout
        try:
            handle = self._wait_deployed(deadline, tick).options(method_name="info")
            info = self._wait(handle.remote, deadline, tick, watch_deploy=True)
        except TimeoutError:
            view = self._backend.apps(max_age=0.0).get(self.app_name)
            self.kill("timeout")
            hint = f" Serve says: {view.message}" if view and view.message else ""
            raise WorkerTimeout(f"the {name} model did not start on Ray within {timeout:.0f} s (no node "
                                f"had room for it, or it loads slowly); it was stopped and will be "
                                f"tried again on the next request.{hint}") from None
        except WorkerFailed:
            self.kill("load failed")
            raise
        self._seen_at = time.monotonic()  # its replica just answered
        self._backend.apps(max_age=0.0)  # `where` and memory() see it at once
        if isinstance(info.get("memory"), dict):
            self._reported = (time.monotonic(), info["memory"])
        if info.get("error"):
            self.kill("load failed")
            raise ModelError(f"The {name} model could not be loaded; the operator can see why on the "
                             "Status tab and in the server log.", detail=info["error"])
        # what a visitor waits for: deploying, placing and starting the replica, and load()
        return LoadInfo(seconds=time.monotonic() - self._started)

    def _wait(self, send: Callable[[], Any], deadline: float, tick: Tick | None,
              watch_deploy: bool = False) -> Any:
        """The reply to the request `send()` makes, unpickled with the hub's guard, by `deadline`."""
        from ray.exceptions import RayActorError
        from ray.serve.exceptions import DeploymentUnavailableError

        name = self.spec.name
        response = send()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                response.cancel()
                raise TimeoutError
            try:
                data = response.result(timeout_s=min(remaining, 0.25))
                break
            except TimeoutError:
                pass
            except DeploymentUnavailableError:
                if not watch_deploy:
                    self._replica_died = True  # deleted under us (by hand, or the cluster restarted)
                    raise WorkerFailed(f"the {name} model's Ray application went away; it will be "
                                       "deployed again on the next request") from None
                time.sleep(0.25)  # just deployed: the handle has not heard of it yet
                response = send()
            except RayActorError as exc:
                self._replica_died = True
                raise WorkerFailed(
                    f"the {name} model's Ray replica died while serving this request "
                    f"({_first_line(exc)}); Ray Serve is restarting it and the next request will "
                    "wait for it") from None
            except Exception as exc:  # noqa: BLE001 - every Ray failure becomes a sentence
                raise WorkerFailed(f"the {name} model's Ray call failed: {_first_line(exc)}") from None
            if watch_deploy:
                view = self._backend.apps(max_age=1.0).get(self.app_name)
                if view is not None and view.status == "DEPLOY_FAILED":
                    response.cancel()
                    raise ModelError(f"The {name} model could not be started on Ray; the operator can "
                                     "see why on the Status tab and in the server log.",
                                     detail=view.message)
            if tick:
                tick()
        try:
            return wire.loads_guarded(data)
        except pickle.UnpicklingError as exc:
            raise ModelError(f"The {name} model returned a result the hub cannot use; the error is "
                             "logged for the operator.", detail=str(exc)) from None

    def call(self, request: Any, timeout: float, threads: int | None = None) -> CallResult:
        name = self.spec.name
        deadline = time.monotonic() + timeout
        try:
            handle = self._wait_deployed(deadline, None).options(method_name="predict")
            payload = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
            threads = policy.threads_on_replica(threads, self._backend.num_cpus)
            reply = self._wait(lambda: handle.remote(payload, threads), deadline, None)
        except TimeoutError:
            self.kill("timeout")
            raise WorkerTimeout(f"the {name} model did not finish a prediction within {timeout:.0f} s; "
                                "its Ray application was stopped and will restart on the next "
                                "request") from None
        kind = reply[0]
        if kind == wire.OK:
            return CallResult(value=reply[1], seconds=reply[2])
        if kind == wire.INPUT_ERROR:
            raise InputError(reply[1])
        if kind == wire.LOAD_FAILED:
            raise ModelError(f"The {name} model could not be loaded on its Ray replica; the operator can "
                             "see why on the Status tab and in the server log.", detail=reply[2])
        raise ModelError(f"The {name} model failed on this request; the error is logged for the "
                         "operator. Try another input or try again.",
                         detail=f"{reply[1]}\n{reply[2]}".strip())

    # -- ending it -------------------------------------------------------------------

    def stop(self, grace: float = 2.0) -> None:
        if self._ended is None:
            self._ended = "stopped"
        self._backend.delete(self.app_name, wait=grace)

    def kill(self, reason: str = "killed") -> None:
        first = self._ended is None
        if first:
            self._ended = reason
        if self._replica_died and first and reason == "killed":
            # The registry forgets a handle whose replica died; Serve is already
            # restarting that replica, and the next start() reuses the application.
            return
        self._backend.delete(self.app_name, wait=0.0)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _process_kind(name: str, cmd: str) -> str:
    """A stable name for one of Ray's processes (many are just "python")."""
    for marker, kind in ((f"{HEAD_MODULE} head", "head launcher"), ("log_monitor.py", "log monitor"),
                         ("monitor.py", "autoscaler monitor"), ("dashboard.py", "dashboard head")):
        if marker in cmd:
            return kind
    if name.startswith("ray::"):
        name = name[len("ray::"):]
        if name == "IDLE":
            return "idle workers"
    return name


class RayBackend:
    """Demos as Ray Serve applications, on a cluster at `address` or on a
    local one-node Ray this backend starts (and ends) itself."""

    name = "ray"

    def __init__(self, address: str | None = None, *, max_replicas: int = 1, idle_ttl_s: float | None = 900.0,
                 num_cpus: float = 1.0, memory_headroom: float = 1.25, local_num_cpus: float | None = None,
                 local_memory_bytes: int | None = None, threads: int | None = None,
                 app_prefix: str = APP_PREFIX, max_models: int | None = None,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S, **_ignored: Any):
        self.max_replicas = max(1, int(max_replicas))
        self.idle_ttl_s = idle_ttl_s
        self.num_cpus = num_cpus
        address = address or os.environ.get("RAY_ADDRESS") or None
        if address is None:  # a Ray of this machine alone: the demos share its cores (policy)
            self.num_cpus = policy.ray_cpus_per_replica(num_cpus, local_num_cpus or os.cpu_count() or 1,
                                                        max_models, self.max_replicas)
        self.memory_headroom = memory_headroom
        self.threads = threads
        self.app_prefix = app_prefix
        self._lock = threading.Lock()  # guards the caches below; never held over a Ray call
        self._apps_cache: tuple[float, dict[str, AppView]] = (0.0, {})
        self._apps_refresh = threading.Lock()
        self._measured: dict[str, int] = {}
        self._deployed: dict[str, str] = {}  # app name -> fingerprint of what we deployed
        self._handles: dict[str, RayModel] = {}
        self._shared_cache: tuple[float, list[SharedProcess]] = (0.0, [])
        self.local: LocalRay | None = None
        os.environ.update(DRIVER_ENV)
        if address is None:
            self.local = LocalRay.start(num_cpus=local_num_cpus, memory_bytes=local_memory_bytes)
            address = self.local.address
            os.environ.update(self.local.env)
        elif is_loopback(address):
            for key, value in LOOPBACK_ENV.items():
                os.environ.setdefault(key, value)
        self.address = address
        try:
            probe(address)
            self._connect_within(address, connect_timeout_s)
        except BaseException:
            if self.local is not None:
                self.local.stop()
            raise

    def _connect_within(self, address: str, timeout: float) -> None:
        """`_connect` with a deadline: `ray.init` and Ray Client's handshake have
        waits without one (a listener that never answers, a client server that
        never starts its session), and a hub must fail with a sentence instead.

        The connecting thread belongs to this call; it cannot be cancelled, so
        after the deadline it is left to the process, which exits (hub.py)."""
        log.info("connecting to Ray at %s", address)
        started = time.monotonic()
        done = threading.Event()
        failed: list[BaseException] = []

        def connect() -> None:
            try:
                self._connect(address)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                failed.append(exc)
            finally:
                done.set()

        threading.Thread(target=connect, name="ray-connect", daemon=True).start()
        if not done.wait(timeout):
            raise RayUnreachable(
                f"Ray at {address} accepts connections but did not finish connecting within {timeout:.0f} s; "
                "check that it is a Ray head (the GCS port, or ray://host:10001 for Ray Client) and that it is "
                "healthy (`ray status`, and the head's ray_client_server log for ray://), or give it longer "
                "with --ray-connect-timeout")
        if failed:
            raise failed[0]
        log.info("connected to Ray at %s in %.1f s", address, time.monotonic() - started)

    def _connect(self, address: str) -> None:
        import logging

        import ray
        from ray import serve

        logging.getLogger("ray").setLevel(logging.WARNING)
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        # ray.init runs on the connecting thread, so it warns it set no SIGTERM handler: hub.py sets its own.
        logging.getLogger("ray._private.worker").addFilter(
            lambda record: "SIGTERM handler is not set" not in record.getMessage())
        # RAY_ADDRESS would override `address` inside ray.init; ours is explicit.
        os.environ.pop("RAY_ADDRESS", None)
        ray.init(address=address, namespace="demohub", log_to_driver=False, logging_level="WARNING",
                 configure_logging=False)
        import psutil

        self.node_id = ray.get_runtime_context().get_node_id()
        self._local_ips = {a.address for addrs in psutil.net_if_addrs().values() for a in addrs}
        # No HTTP proxies: the hub calls replicas through handles, and a proxy would bind a port.
        serve.start(proxy_location="Disabled")

    # -- Serve's view, cached for a second so every handle can ask often -------------

    def apps(self, max_age: float | None = None) -> dict[str, AppView]:
        """Serve's view of our applications. With no `max_age`, the cached view:
        never a call to Ray, because the registry asks `alive()` and `where`
        under its lock; `sweep()` refreshes it every second."""
        with self._lock:
            at, views = self._apps_cache
        if max_age is None or time.monotonic() - at <= max_age:
            return views
        with self._apps_refresh:  # one refresh at a time; the others use its result
            with self._lock:
                at, views = self._apps_cache
            if time.monotonic() - at <= max_age:
                return views
            asked = time.monotonic()  # the view is as old as the question, not the answer
            try:
                views = {k: v for k, v in _app_views(self._serve_details()).items()
                         if k.startswith(self.app_prefix)}
            except Exception:  # noqa: BLE001 - keep the last view; a later refresh retries
                return views
            with self._lock:
                self._apps_cache = (asked, views)
        return views

    def is_local(self, replica: Replica) -> bool:
        """Whether the replica's PID is a process on this machine. Through Ray
        Client our "node" is the cluster's head, so its address must be ours too."""
        return replica.node_id == self.node_id and replica.node_ip in self._local_ips

    def cached_apps(self) -> tuple[float, dict[str, AppView]]:
        """The cached view and when it was fetched (monotonic)."""
        with self._lock:
            return self._apps_cache

    def _serve_details(self, timeout: float = 10.0) -> dict:
        import ray
        from ray.serve.context import _get_global_client

        # serve.status() drops per-replica pid/node; the controller's details have them.
        controller = _get_global_client()._controller
        return ray.get(controller.get_serve_instance_details.remote(), timeout=timeout)

    def remember_memory(self, name: str, memory: int) -> None:
        with self._lock:
            self._measured[name] = memory

    # -- Backend -------------------------------------------------------------------

    def _options(self, spec: DemoSpec) -> dict:
        with self._lock:
            measured = self._measured.get(spec.name, 0)
        memory = int(measured * self.memory_headroom)
        actor: dict[str, Any] = {"num_cpus": self.num_cpus}
        if memory:
            actor["memory"] = memory
        pythonpath = [str(PROJECT_ROOT)] + ([str(spec.import_root)] if spec.import_root else [])
        env = {"PYTHONPATH": os.pathsep.join(pythonpath), "TF_CPP_MIN_LOG_LEVEL": "2"}
        # Replicas inherit their node's environment, not the hub's: pass what the
        # worker path would have inherited (never secrets such as HF_TOKEN: set those
        # on the nodes, since runtime_env is stored in Ray's GCS in clear).
        # HUB_CACHE_DIR: a node keeps what runtimes derive (durian's traced graph) at the same path.
        env.update({k: v for k, v in os.environ.items() if k in ("HF_ENDPOINT", "HF_HUB_OFFLINE", cache.ENV)})
        # GPUs are Ray's to place: a demo asked to run on CUDA asks Ray for one
        # (Ray then sets CUDA_VISIBLE_DEVICES); anything else runs on the CPU.
        asked, _setting = device.requested(spec.name, spec.device, os.environ)
        env[device.WORKER_VAR] = "cuda" if asked.startswith("cuda") else "cpu"
        if asked.startswith("cuda"):
            actor["num_gpus"] = 1
        if self.threads:
            env.update(OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads),
                       TF_NUM_INTRAOP_THREADS=str(self.threads), TF_NUM_INTEROP_THREADS="1")
        actor["runtime_env"] = {"env_vars": env}
        autoscaling: dict[str, Any] = {
            "min_replicas": 0 if self.idle_ttl_s else 1, "initial_replicas": 1,
            "max_replicas": policy.copies_allowed(spec.max_batch, spec.max_copies, self.max_replicas),
            "target_ongoing_requests": 1,
            "upscale_delay_s": 0.0,
            "downscale_delay_s": 30.0,
        }
        to_zero = policy.scale_to_zero_after(self.idle_ttl_s)
        if to_zero is not None:
            autoscaling["downscale_to_zero_delay_s"] = to_zero
        return {
            "name": DEPLOYMENT,
            "ray_actor_options": actor,
            "autoscaling_config": autoscaling,
            # one prediction at a time per replica, as in a worker process (a runtime need
            # not be thread-safe); more at once means more replicas, up to max_replicas
            "max_ongoing_requests": 1,
            "graceful_shutdown_timeout_s": 2.0,
            "graceful_shutdown_wait_loop_s": 0.5,
            "health_check_period_s": 2.0,
            "health_check_timeout_s": max(30.0, spec.predict_timeout_s),
            # a replica that cannot load reports why (DemoReplica); Serve need not retry it
            "max_constructor_retry_count": 1,
        }

    def start(self, spec: DemoSpec, model_dir: Path, *, placeholder: bool, threads: int | None = None) -> RayModel:
        from ray import serve

        app_name = f"{self.app_prefix}{spec.name}"
        options = self._options(spec)
        args = (spec.runtime, str(spec.import_root) if spec.import_root else None, str(model_dir), placeholder)
        # what the replica would load; a changed memory ask alone does not redeploy
        same = {k: v for k, v in options.items() if k != "ray_actor_options"}
        actor = options["ray_actor_options"]
        fingerprint = hashlib.sha256(repr((args, same, actor.get("runtime_env"), actor["num_cpus"],
                                           actor.get("num_gpus"))).encode()).hexdigest()
        view = self.apps(max_age=0.0).get(app_name)
        with self._lock:
            reuse = (self._deployed.get(app_name) == fingerprint and view is not None
                     and view.status not in ("DEPLOY_FAILED", "DELETING"))
            if not reuse:
                self._deployed[app_name] = fingerprint
        if reuse:  # e.g. after a replica died: Serve restarted it; no redeploy
            model = RayModel(self, spec, app_name, handle=serve.get_app_handle(app_name))
        else:
            model = RayModel(self, spec, app_name, app=serve.deployment(DemoReplica).options(**options).bind(*args))
        with self._lock:
            self._handles[app_name] = model
        return model

    def concurrency(self, spec: DemoSpec) -> int:
        return policy.copies_allowed(spec.max_batch, spec.max_copies, self.max_replicas)  # one call per replica at a time

    def delete(self, app_name: str, wait: float = 0.0) -> None:
        """Delete one of our applications; wait up to `wait` seconds for it to go."""
        from ray import serve

        with self._lock:
            self._deployed.pop(app_name, None)
        try:
            serve.delete(app_name, _blocking=False)
        except Exception:  # noqa: BLE001 - already gone, or the cluster is; nothing to end
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and app_name in self.apps(max_age=0.0):
            time.sleep(0.2)

    def _ray_processes(self) -> list[tuple[int, str]]:
        """Processes of this Ray instance on this machine: (pid, kind)."""
        import psutil
        import ray

        try:
            session = Path(ray._private.worker.global_worker.node.get_session_dir_path()).name
        except Exception:  # noqa: BLE001 - not connected to a local node
            return []
        out = []
        for proc in psutil.process_iter(["pid", "name", "cmdline"]):
            cmd = " ".join(proc.info.get("cmdline") or ())
            if session in cmd and proc.info["pid"] != os.getpid():
                out.append((proc.info["pid"], _process_kind(proc.info.get("name") or "?", cmd)))
        # workers are not in the session dir's command line; they are the raylet's children
        pids = {pid for pid, _ in out}
        for pid, name in list(out):
            if name == "raylet":
                try:
                    for child in psutil.Process(pid).children():
                        if child.pid not in pids:
                            out.append((child.pid, _process_kind(child.name(), "")))
                except psutil.Error:
                    pass
        return out

    def start_cost(self, spec: DemoSpec) -> int | None:
        return None  # a replica is a process of its own

    def shared(self, metric: str, fresh: bool = False) -> list[SharedProcess]:
        """Ray's own processes on this machine (head, GCS, raylet, agents, the
        Serve controller, idle workers), plus replicas of applications the
        registry no longer holds (idle: `trim` deletes them)."""
        now = time.monotonic()
        with self._lock:
            at, cached = self._shared_cache
        if now - at < 2.0:
            return cached
        views = self.apps()
        with self._lock:
            held = {n for n, h in self._handles.items() if h._ended is None and not h._replica_died}
        replica_pids: dict[int, str] = {}
        for app_name, view in views.items():
            for r in view.replicas:
                if r.pid and self.is_local(r):
                    replica_pids[r.pid] = app_name
        kinds: dict[str, list[int]] = {}
        orphans: dict[str, list[int]] = {}
        for pid, kind in self._ray_processes():
            app_name = replica_pids.get(pid)
            if app_name in held:
                continue  # counted as that model's memory
            if app_name is not None:
                orphans.setdefault(app_name, []).append(pid)
            else:
                kinds.setdefault(kind, []).append(pid)
        out = []
        # one entry per kind (a stable name for /metrics), summed over its processes
        for kind, pids in sorted(kinds.items()):
            out.append(SharedProcess(name=f"ray: {kind}", pid=pids[0] if len(pids) == 1 else None,
                                     memory_bytes=sum(process_memory(p, metric) for p in pids), idle=False))
        for app_name, pids in sorted(orphans.items()):
            out.append(SharedProcess(name=f"ray: {app_name} replica not in use", pid=pids[0],
                                     memory_bytes=sum(process_memory(p, metric) for p in pids), idle=True))
        with self._lock:
            self._shared_cache = (time.monotonic(), out)
        return out

    def trim(self, keep: set[str] = frozenset()) -> int:
        """Delete applications the registry no longer holds (their replica
        outlived a crash), except those serving `keep`."""
        views = self.apps(max_age=0.0)
        with self._lock:
            held = {n for n, h in self._handles.items() if h._ended is None and not h._replica_died}
            ours = set(self._deployed) | set(self._handles)
            self._shared_cache = (0.0, [])
        keep_apps = {f"{self.app_prefix}{n}" for n in keep}
        freed = 0
        for app_name in sorted(ours - held - keep_apps):
            if app_name in views:
                freed += sum(process_memory(r.pid, "pss") for r in views[app_name].replicas
                             if r.pid and self.is_local(r))
                self.delete(app_name, wait=0.0)
        return freed

    def sweep(self) -> None:
        self.apps(max_age=1.0)

    def close(self) -> None:
        """Delete our applications; end the local Ray if we started it."""
        import ray

        with self._lock:
            names = set(self._deployed) | set(self._handles)
        for app_name in sorted(names):
            self.delete(app_name, wait=0.0)
        if names:
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline and names & set(self.apps(max_age=0.0)):
                time.sleep(0.25)
        with self._lock:
            handles = [h._handle for h in self._handles.values() if h._handle is not None]
        for handle in handles:
            try:
                handle.shutdown()  # stops its router's background tasks before Ray goes
            except Exception:  # noqa: BLE001
                pass
        try:
            ray.shutdown()
        finally:
            if self.local is not None:
                self.local.stop()

