"""The Ray head the hub talks to: a one-node Ray on 127.0.0.1 that the hub
starts and owns (`LocalRay`), or a cluster's head named by --ray-address,
checked before connecting (`probe`, `is_loopback`).

Stands alone: the standard library only, with psutil and Ray imported where
they are used. The watcher that runs `ray start --head` is `_head_main`
(`python -m demohub.backends.ray head`, see __main__.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demohub import PROJECT_ROOT

#: `python -m HEAD_MODULE head ...` is the watcher around `ray start --head` (see __main__.py)
HEAD_MODULE = "demohub.backends.ray"

#: Environment a process needs *before* `import ray` to talk to a loopback-only
#: node: Ray otherwise replaces 127.0.0.1 by the machine's routable address.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free_port() -> int:
    """A free port on 127.0.0.1 *below* the kernel's ephemeral range (and above
    Ray's fixed ranges): a port picked with bind(0) comes from that
    range, so between our pick and Ray's bind any process binding port 0 (Ray
    starts dozens) could take it, and a Ray head whose client server cannot bind
    its port ends itself. Above 24000: Ray Client's per-session servers use 23000-23999."""
    low, high = 24001, max(24002, _ephemeral_low() - 1)
    for _ in range(200):
        port = random.randint(low, high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # a crowded range: fall back to the kernel's pick
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayUnreachable(ConnectionError):
    """The Ray cluster named by --ray-address / RAY_ADDRESS does not answer."""


def probe(address: str, timeout: float = 10.0) -> None:
    """Fail in seconds, with a sentence, when nothing listens at `address`:
    `ray.init` would otherwise retry for minutes."""
    if address in ("auto", "local"):  # Ray's own discovery of a cluster on this machine
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise RayUnreachable(f"--ray-address {address!r} is not an address: use host:port (the GCS, "
                             "port 6379 by default) or ray://host:10001 (Ray Client)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RayUnreachable(f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one "
                             "(ray start --head) or fix --ray-address / RAY_ADDRESS, or leave both unset "
                             "to let the hub start a local Ray") from None


def is_loopback(address: str) -> bool:
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host in _LOOPBACK_HOSTS


# -- a local single-node Ray --------------------------------------------------------


class _Descendants:
    """Every process seen under `root` (psutil handles: a recycled PID is never ended)."""

    def __init__(self, root: int):
        self.root = root
        self.procs: dict[int, Any] = {}

    def update(self) -> None:
        import psutil

        try:
            for child in psutil.Process(self.root).children(recursive=True):
                self.procs.setdefault(child.pid, child)
        except psutil.Error:
            pass

    def kill(self) -> None:
        import psutil

        for proc in self.procs.values():
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(list(self.procs.values()), timeout=5)


class _HeadEnded(RuntimeError):
    """The head process ended while starting (tried again with other ports)."""


def _listening(port: int, root: int) -> bool:
    """Whether a process of `root`'s tree listens on `port` (a stranger on it does not count)."""
    import psutil

    try:
        tree = {root, *(c.pid for c in psutil.Process(root).children(recursive=True))}
        return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid in tree
                   for c in psutil.net_connections(kind="tcp"))
    except psutil.Error:
        return False


@dataclass
class LocalRay:
    """A one-node Ray head on 127.0.0.1, started and owned (by PID) by this process.

    It runs `ray start --head --block` under a small watcher (`python -m
    demohub.backends.ray head`) that ends it if its parent dies, so a
    hub killed with SIGKILL leaves no Ray behind. Every port is loopback-only,
    the dashboard is off, the object store is bounded, and access needs a
    token written for this instance only (not `~/.ray/auth_token`).
    """

    proc: subprocess.Popen
    address: str
    temp_dir: Path
    #: what a driver process must have in its environment before `import ray`
    env: dict[str, str] = field(default_factory=dict)
    #: the Ray Client address (`ray://127.0.0.1:PORT`), as a front outside a cluster uses it
    client_address: str = ""
    #: raylets `add_node` joined to this head (ended with it)
    nodes: list["LocalNode"] = field(default_factory=list)

    @classmethod
    def start(cls, num_cpus: float | None = None, memory_bytes: int | None = None,
              object_store_bytes: int = 100 * 2**20, timeout: float = 120.0, attempts: int = 3) -> "LocalRay":
        """Start the head and return once it serves (its GCS address written and
        its Ray Client port answering). A head that ends while starting (a port
        taken between our pick and Ray's bind, say) is started again with other
        ports, up to `attempts` times; the last failure is raised with its log."""
        deadline = time.monotonic() + timeout
        for attempt in range(1, attempts + 1):
            try:
                return cls._start_once(num_cpus, memory_bytes, object_store_bytes, deadline)
            except _HeadEnded:
                if attempt == attempts or time.monotonic() >= deadline:
                    raise
        raise AssertionError("unreachable")

    @classmethod
    def _start_once(cls, num_cpus: float | None, memory_bytes: int | None, object_store_bytes: int,
                    deadline: float) -> "LocalRay":
        temp_dir = Path(tempfile.mkdtemp(prefix="dh-ray-", dir="/tmp"))  # unix socket paths stay short
        token = temp_dir / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        env = dict(LOOPBACK_ENV, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
        head_env = {**os.environ, **env,
                    # nothing to drain (no HTTP proxies): SIGTERM ends it at once, not after 30 s
                    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
                    # a Ray Client session starts a server process; 30 s is too short on a busy machine
                    "RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S": "120",
                    # The Ray Client proxy forks (then execs) a server per session from a busy
                    # gRPC thread; gRPC's post-fork handler restarts its threads in that child,
                    # which then segfaulted before exec (seen with strace: SIGSEGV in the child's
                    # new event_engine thread), leaving the client waiting with no deadline.
                    # gRPC's documented switch for fork-then-exec programs turns the handlers off.
                    "GRPC_ENABLE_FORK_SUPPORT": "0",
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
        client_port = _free_port()
        args = ["--head", "--block", "--port", "0", "--node-ip-address", "127.0.0.1",
                "--include-dashboard", "false", "--disable-usage-stats",
                # streams worker logs to drivers; ours run with log_to_driver=False (~45 MB saved)
                "--include-log-monitor", "false",
                "--temp-dir", str(temp_dir), "--object-store-memory", str(object_store_bytes),
                # ports Ray would otherwise take at fixed numbers (a second Ray on the machine clashes)
                "--ray-client-server-port", str(client_port),
                "--dashboard-agent-listen-port", str(_free_port())]
        if num_cpus is not None:
            args += ["--num-cpus", str(num_cpus)]
        if memory_bytes:
            args += ["--memory", str(int(memory_bytes))]
        log = open(temp_dir / "head.log", "wb")  # noqa: SIM115 - the child holds it
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", HEAD_MODULE, "head", "--parent", str(os.getpid()), "--", *args],
                env=head_env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        finally:
            log.close()
        address_file = temp_dir / "ray_current_cluster"
        head = cls(proc, "", temp_dir, env, client_address=f"ray://127.0.0.1:{client_port}")
        seen = _Descendants(proc.pid)  # a head that ends early can orphan some (its agents): end them too
        while time.monotonic() < deadline:
            seen.update()
            if proc.poll() is not None:
                text = (temp_dir / "head.log").read_text(errors="replace")[-3000:]
                head.stop()
                seen.kill()
                raise _HeadEnded(f"the local Ray head exited with code {proc.returncode}:\n{text}")
            if not head.address and address_file.exists() and address_file.read_text().strip():
                head.address = address_file.read_text().strip()
            if head.address and _listening(client_port, proc.pid):  # its last process is up: it serves
                return head
            time.sleep(0.2)
        head.stop()
        raise RuntimeError("the local Ray head did not start in time")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def add_node(self, num_cpus: float, resources: dict[str, float] | None = None,
                 object_store_bytes: int = 100 * 2**20, timeout: float = 120.0) -> "LocalNode":
        """A second raylet joined to this head, on 127.0.0.1 too: a two-node
        cluster on one machine, so placement on a node that is not the hub's can
        be tried here. `ray start` refuses to join a loopback-only head, so the
        node is started the way Ray's own `ray.cluster_utils.Cluster` starts
        one (see `_node_main`). It ends with the head (`stop`), or by `stop_node`."""
        node_dir = Path(tempfile.mkdtemp(prefix="dh-ray-node-", dir="/tmp"))  # its own logs and sockets
        node_log = self.temp_dir / f"{node_dir.name}.log"  # outside node_dir: the watcher removes that at exit
        args = ["--parent", str(os.getpid()), "--gcs-address", self.address, "--num-cpus", str(num_cpus),
                "--object-store-bytes", str(object_store_bytes), "--temp-dir", str(node_dir)]
        if resources:
            args += ["--resources", json.dumps(resources)]
        with open(node_log, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", HEAD_MODULE, "node", *args],
                                    env={**os.environ, **self.env}, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        node = LocalNode(proc, node_dir)
        self.nodes.append(node)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = node_log.read_text(errors="replace")
            if proc.poll() is not None:
                self.stop_node(node)
                raise RuntimeError(f"the added Ray node exited with code {proc.returncode}:\n{text[-3000:]}")
            if NODE_READY in text:
                return node
            time.sleep(0.2)
        self.stop_node(node)
        raise RuntimeError(f"the added Ray node did not start within {timeout:.0f} s")

    def stop_node(self, node: "LocalNode", timeout: float = 30.0) -> None:
        """End one node `add_node` started, and remove its temp folder."""
        _end_tree(node.proc, timeout)
        shutil.rmtree(node.temp_dir, ignore_errors=True)
        if node in self.nodes:
            self.nodes.remove(node)

    def stop(self, timeout: float = 30.0) -> None:
        """End the added nodes, then the head; remove its temp folder."""
        for node in list(self.nodes):
            self.stop_node(node, timeout)
        _end_tree(self.proc, timeout)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@dataclass
class LocalNode:
    """A raylet `LocalRay.add_node` started: its watcher process and its temp folder."""

    proc: subprocess.Popen
    temp_dir: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


def _end_tree(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM `proc` (Ray ends every process it started), then SIGKILL any of
    its descendants still there, by PID."""
    import psutil

    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    _gone, alive = psutil.wait_procs(descendants, timeout=5)
    for child in alive:
        try:
            child.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)


NODE_READY = "demohub: ray node ready"


def _node_main(argv: list[str]) -> int:
    """`python -m demohub.backends.ray node --parent PID --gcs-address ADDR ...`:
    a raylet joined to a loopback-only head, as `ray.cluster_utils.Cluster.add_node`
    starts one (a DeveloperAPI), running until its parent dies or it gets SIGTERM."""
    parser = argparse.ArgumentParser(prog=f"python -m {HEAD_MODULE} node")
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--gcs-address", required=True)
    parser.add_argument("--num-cpus", type=float, required=True)
    parser.add_argument("--object-store-bytes", type=int, required=True)
    parser.add_argument("--temp-dir", required=True)
    parser.add_argument("--resources", default=None)
    args = parser.parse_args(argv)
    from ray._private.node import Node
    from ray._private.parameter import RayParams

    def orphaned() -> None:  # Node() waits for the GCS without end; a node whose parent died must go
        while os.getppid() == args.parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=orphaned, daemon=True, name="parent-watch").start()
    params = RayParams(gcs_address=args.gcs_address, node_ip_address="127.0.0.1", num_cpus=args.num_cpus,
                       resources=json.loads(args.resources) if args.resources else None,
                       object_store_memory=args.object_store_bytes, min_worker_port=0, max_worker_port=0,
                       include_log_monitor=False, node_manager_port=0, temp_dir=args.temp_dir)
    node = Node(params, head=False, shutdown_at_exit=False, spawn_reaper=False)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # from here on, SIGTERM ends the node cleanly
    print(NODE_READY, flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        node.kill_all_processes(check_alive=False, allow_graceful=True)
        if Path(args.temp_dir).name.startswith("dh-ray-"):
            shutil.rmtree(args.temp_dir, ignore_errors=True)
    return 0


def _head_main(argv: list[str]) -> int:
    """`python -m demohub.backends.ray head --parent PID -- <ray start args>`."""
    parser = argparse.ArgumentParser(prog=f"python -m {HEAD_MODULE} head")
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("ray_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)

    def watch() -> None:
        while os.getppid() == args.parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)  # Ray's handler ends the processes it started

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()
    ray_args = [a for a in args.ray_args if a != "--"]
    temp_dir = ray_args[ray_args.index("--temp-dir") + 1] if "--temp-dir" in ray_args else None
    from ray.scripts.scripts import main as ray_main

    sys.argv = ["ray", "start", *ray_args]
    try:
        return ray_main() or 0
    finally:
        # Ray's SIGTERM handler has ended its processes; their logs and sockets go too
        # (LocalRay.stop does the same, but a hub killed with SIGKILL never calls it).
        if temp_dir and Path(temp_dir).name.startswith("dh-ray-"):
            shutil.rmtree(temp_dir, ignore_errors=True)

