"""The hub against the one-process app (bench/baseline_app.py), side by side in
one run, and the hub/baseline ratio of every figure with its min-max over rounds.

    .venv/bin/python bench/vs_baseline.py                    # 3 rounds, ~30 min on 2 busy cores
    .venv/bin/python bench/vs_baseline.py --quick            # 1 short round, ~5 min: a smoke run
    .venv/bin/python bench/vs_baseline.py --hub-args "--max-models 4 --idle-ttl 0 --start-method template"
    .venv/bin/python bench/vs_baseline.py --json /tmp/vs.json  # every raw sample as well
    .venv/bin/python bench/vs_baseline.py --root /tmp/old-checkout --cache-dir .cache  # another commit's code
    .venv/bin/python bench/vs_baseline.py --table-from /tmp/vs.json  # print a saved run's report again

A round starts each app fresh once per demo and alternates them (baseline, hub,
baseline, hub, ...; the next round starts with the hub), so slow drifts in the
machine's load fall on both. Each fresh start gives the page-ready time, the
tree's memory at rest, and the first answer of one demo. The last start of each
app in a round then loads every model and measures the memory of the whole
process tree with everything loaded and idle CPU. Up to here only one app runs
at a time.

Warm latency (plain HTTP API and gradio_client, one request at a time) and the
mixed stream from 8 clients (50 % questions, 10 % search, 20 % cassava, 20 % durian, with the
server's CPU-seconds per answered request) are measured last, side by side:
both apps loaded, only one awake (the other's process tree SIGSTOPped), in
blocks whose order alternates, so the machine's drift falls on both alike. The
stream's figures are its steady state: each app first runs one unmeasured
warm-up block (the hub grows its extra copies there).

Both apps bind 127.0.0.1 on free ports, get their own Gradio temp folder and TMPDIR (removed
at the end), and are ended by PID, with any child process still alive after its
parent exits. Every wait has a deadline.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import psutil
from common import free_port, log, percentile  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
IMAGES = ROOT.parent / "shared" / "data" / "images"
DEFAULT_HUB_ARGS = "--max-models 4 --idle-ttl 0"  # every demo stays loaded, as in the one-process app
#: the hub's default --queue-rest-after plus a margin (demohub/web/pacing.py)
REST_AFTER_S = 12.0
#: warm calls per demo and client kind in one awake block of the side-by-side warm stage
WARM_BLOCK = 5
#: the mixed stream is cut into this many awake blocks per app, alternated like the warm calls
#: (even, so each app goes first as often; each block is shorter than the hub's 60 s copy TTL)
STREAM_BLOCKS = 4
#: an unmeasured stream per app before its first block: the figures are the steady state, not
#: the hub growing its extra copies (the warm-up's own figures are kept in the JSON)
STREAM_WARMUP_S = 10.0
DEMOS = ("cassava", "durian", "questions", "search")
MIX = {"questions": 0.5, "search": 0.1, "cassava": 0.2, "durian": 0.2}
CLIENTS = 8
QUESTIONS = (
    "Who wrote Hamlet?", "What is the capital of France?", "How many moons does Jupiter have?",
    "When did the Berlin Wall fall?", "What does NASA stand for?", "Why is the sky blue?",
    "How far is the Moon from the Earth?", "Which river is the longest in Africa?",
)
SEARCHES = (
    "a tool for cutting wood", "fear of small closed spaces", "a person who bakes bread for a living",
    "to walk slowly without any purpose", "extremely happy", "money paid to free a kidnapped person",
)
#: the text demos and the rest of their inputs besides the text (search: k and the filter)
TEXT_ARGS: dict[str, tuple] = {"questions": (), "search": (10, "any")}
PHOTOS = {"cassava": ("cassava_1.jpg", "cassava_2.jpg", "cassava_3.jpg"), "durian": ("durian_1.jpg",)}
START_TIMEOUT_S = 600.0
REQUEST_TIMEOUT_S = 180.0


# ---------------------------------------------------------------- one process tree

def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def tree_memory(pid: int) -> dict[str, int]:
    """PSS, RSS and USS summed over the process and all its descendants (bytes)."""
    total = {"pss": 0, "rss": 0, "uss": 0, "processes": 0}
    for proc in tree(pid):
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        total["pss"] += info.pss
        total["rss"] += info.rss
        total["uss"] += info.uss
        total["processes"] += 1
    return total


def cpu_seconds(proc: psutil.Process) -> float:
    """CPU-seconds of one process, including its children it has already reaped."""
    t = proc.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def tree_cpu(pid: int) -> float:
    """CPU-seconds of the tree, including descendants already reaped by a member."""
    seconds = 0.0
    for proc in tree(pid):
        try:
            seconds += cpu_seconds(proc)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return seconds


class Server:
    """One app under test, started by this script and ended by PID."""

    def __init__(self, name: str, cmd: list[str], cwd: Path, env: dict[str, str], log_path: Path, port: int):
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.started = time.perf_counter()
        with open(log_path, "ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT)
        self._known: dict[int, psutil.Process] = {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(line for line in text[-lines:])

    def wait_page(self, timeout: float = START_TIMEOUT_S) -> float:
        """Seconds from the start to `GET /` answering 200 with the page."""
        deadline = self.started + timeout
        with httpx.Client(timeout=5) as http:
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    resp = http.get(self.url + "/")
                    if resp.status_code == 200 and "<html" in resp.text.lower():
                        return time.perf_counter() - self.started
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not serve its page within {timeout:.0f} s:\n{self.log_tail()}")

    def remember_children(self) -> None:
        """Note the live descendants, so `stop` can end them if they outlive the parent."""
        try:
            for child in psutil.Process(self.pid).children(recursive=True):
                self._known[child.pid] = child
        except psutil.NoSuchProcess:
            pass

    def processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _signal_tree(self, signum: int) -> None:
        for proc in self.processes():
            try:
                proc.send_signal(signum)  # psutil checks the creation time: never a recycled PID
            except psutil.NoSuchProcess:
                pass

    def pause(self) -> None:
        """SIGSTOP the whole tree: it keeps its memory and takes no CPU until `resume`."""
        self.remember_children()
        self._signal_tree(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_tree(signal.SIGCONT)

    @contextmanager
    def awake(self, settle_s: float = 0.5) -> Iterator["Server"]:
        """Resume the paused tree for the `with` block, `settle_s` after waking it,
        and pause it again however the block ends."""
        self.resume()
        try:
            time.sleep(settle_s)
            yield self
        finally:
            self.pause()

    def stop(self) -> None:
        self.remember_children()
        self.resume()  # a paused tree cannot act on SIGTERM
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        # Hub workers watch their parent and exit within about a second; wait, then end stragglers.
        _, alive = psutil.wait_procs(list(self._known.values()), timeout=10)
        for proc in alive:
            try:
                proc.kill()  # psutil checks the creation time: never a recycled PID
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)


# ---------------------------------------------------------------- calling the apps

@dataclass
class Inputs:
    """Round-robin inputs per demo."""

    counters: dict[str, int] = field(default_factory=dict)

    def next(self, demo: str) -> str:
        n = self.counters.get(demo, 0)
        self.counters[demo] = n + 1
        if demo == "questions":
            return QUESTIONS[n % len(QUESTIONS)]
        if demo == "search":
            return SEARCHES[n % len(SEARCHES)]
        photos = PHOTOS[demo]
        return str(IMAGES / photos[n % len(photos)])


class CallFailed(Exception):
    pass


def http_predict(http: httpx.Client, url: str, demo: str, value: str) -> None:
    """One request as a browser-less caller makes it: upload the photo (if any),
    POST /gradio_api/call/<demo>, read the result stream to its end."""
    if demo in TEXT_ARGS:
        data: list[Any] = [value, *TEXT_ARGS[demo]]
    else:
        with open(value, "rb") as photo:
            resp = http.post(f"{url}/gradio_api/upload",
                             files=[("files", (Path(value).name, photo, "image/jpeg"))])
        resp.raise_for_status()
        data = [{"path": resp.json()[0], "meta": {"_type": "gradio.FileData"}, "orig_name": Path(value).name}]
    resp = http.post(f"{url}/gradio_api/call/{demo}", json={"data": data})
    resp.raise_for_status()
    event_id = resp.json()["event_id"]
    resp = http.get(f"{url}/gradio_api/call/{demo}/{event_id}")
    resp.raise_for_status()
    if "event: complete" not in resp.text:
        raise CallFailed(resp.text.strip()[:300])


def timed(fn: Callable[[], None]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def mixed_stream(url: str, pid: int, seconds: float, seed: int, mix: dict[str, float] = MIX) -> dict[str, Any]:
    """CLIENTS threads, each sending one request after another for `seconds`,
    each request's demo drawn with the weights in `mix`."""
    demos, weights = list(mix), list(mix.values())
    deadline = time.perf_counter() + seconds
    lock = threading.Lock()
    answered: list[tuple[str, float]] = []
    late: list[str] = []
    errors: list[str] = []

    def client(index: int) -> None:
        rng = random.Random(seed * 100 + index)
        inputs = Inputs({d: rng.randrange(8) for d in demos})
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
            while time.perf_counter() < deadline:
                demo = rng.choices(demos, weights)[0]
                started = time.perf_counter()
                try:
                    http_predict(http, url, demo, inputs.next(demo))
                except (httpx.HTTPError, CallFailed, OSError, ValueError, KeyError) as exc:
                    with lock:
                        errors.append(f"{demo}: {type(exc).__name__}: {str(exc)[:160]}")
                    continue
                finished = time.perf_counter()
                with lock:
                    if finished <= deadline:
                        answered.append((demo, finished - started))
                    else:
                        late.append(demo)

    threads = [threading.Thread(target=client, args=(i,), daemon=True, name=f"client-{i}")
               for i in range(CLIENTS)]
    cpu_before = tree_cpu(pid)
    started = time.perf_counter()
    for t in threads:
        t.start()
    # The window closes at the deadline; requests still in flight finish after it and are not counted.
    time.sleep(max(0.0, deadline - time.perf_counter()))
    cpu = tree_cpu(pid) - cpu_before
    wall = time.perf_counter() - started
    join_deadline = time.perf_counter() + REQUEST_TIMEOUT_S + 10
    for t in threads:
        t.join(timeout=max(0.0, join_deadline - time.perf_counter()))
    return stream_summary([{"seconds": wall, "late": len(late), "errors": errors, "server_cpu_s": cpu,
                            "latencies": {d: sorted(s for name, s in answered if name == d) for d in demos}}])


def stream_summary(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """One app's figures over one or more stream blocks (each as `mixed_stream` returns it)."""
    latencies = {d: sorted(s for b in blocks for s in b["latencies"][d]) for d in blocks[0]["latencies"]}
    answered = sum(len(v) for v in latencies.values())
    wall = sum(b["seconds"] for b in blocks)
    cpu = sum(b["server_cpu_s"] for b in blocks)
    return {
        "blocks": len(blocks), "seconds": wall, "answered": answered, "late": sum(b["late"] for b in blocks),
        "errors": [e for b in blocks for e in b["errors"]],
        "answers_per_s": answered / wall if wall else float("nan"), "server_cpu_s": cpu,
        "cpu_s_per_answer": cpu / answered if answered else float("nan"),
        "block_answers_per_s": [sum(len(v) for v in b["latencies"].values()) / b["seconds"] for b in blocks],
        "latencies": latencies,
        "per_demo": {d: {"n": len(v), "p50": statistics.median(v) if v else None,
                         "p95": percentile(v, 0.95) if v else None} for d, v in latencies.items()},
    }


# ---------------------------------------------------------------- one round

@dataclass
class Settings:
    rounds: int
    warm_calls: int
    idle_s: float
    throughput_s: float
    hub_args: list[str]
    root: Path
    cache_dir: Path
    workdir: Path


def app_command(app: str, port: int, settings: Settings) -> list[str]:
    if app == "hub":
        return [PYTHON, str(settings.root / "hub.py"), "--host", "127.0.0.1", "--port", str(port),
                "--cache-dir", str(settings.cache_dir), *settings.hub_args]
    return [PYTHON, str(ROOT / "bench" / "baseline_app.py"), "--port", str(port), "--root", str(settings.root),
            "--cache-dir", str(settings.cache_dir)]


def app_env(app: str, settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["GRADIO_ANALYTICS_ENABLED"] = "False"
    env["GRADIO_TEMP_DIR"] = str(settings.workdir / f"gradio-{app}")
    # the baseline's TensorFlow writes autograph modules to TMPDIR, removed only at a clean exit
    env["TMPDIR"] = str(settings.workdir / f"tmp-{app}")
    os.makedirs(env["TMPDIR"], exist_ok=True)
    return env


@contextmanager
def hubs_side_by_side(hub_args: dict[str, list[str]], prefix: str) -> Iterator[dict[str, Server]]:
    """One real hub.py per label, each with its own extra arguments, serving at once on
    127.0.0.1; yields them once every page answers, and ends them (by PID) and their
    logs' folder however the run ends."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    servers: dict[str, Server] = {}
    try:
        for i, (label, args) in enumerate(hub_args.items()):
            port = free_port()
            cmd = [PYTHON, str(ROOT / "hub.py"), "--host", "127.0.0.1", "--port", str(port), *args]
            env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
            servers[label] = Server(label, cmd, ROOT, env, workdir / f"hub-{i}.log", port)
        for server in servers.values():
            server.wait_page()
        yield servers
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)  # made above: this run's hub logs


def start(app: str, settings: Settings) -> Server:
    port = free_port()
    return Server(app, app_command(app, port, settings), settings.root, app_env(app, settings),
                  settings.workdir / f"{app}.log", port)


def fresh_start(app: str, demo: str, settings: Settings, inputs: Inputs, keep: bool) -> tuple[dict, Server | None]:
    """Start `app`, wait for its page, measure memory at rest, ask `demo` first."""
    server = start(app, settings)
    try:
        page_s = server.wait_page()
        rest = tree_memory(server.pid)
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
            latency = timed(lambda: http_predict(http, server.url, demo, inputs.next(demo)))
        # The memory read between page and request is left out of the first answer.
        sample = {"page_s": page_s, "rest_memory": rest, "first_demo": demo,
                  "first_answer_s": page_s + latency, "first_request_s": latency,
                  "loadavg": os.getloadavg()[0]}
        log(f"{app}: page {page_s:.1f} s, first {demo} answer {page_s + latency:.1f} s after start, "
            f"rest PSS {rest['pss'] / 2**20:.0f} MiB")
    except BaseException:
        server.stop()
        raise
    if keep:
        return sample, server
    server.stop()
    return sample, None


def load_everything(server: Server, inputs: Inputs) -> None:
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
        for _ in range(2):  # first pass loads what is not loaded yet, second warms it
            for demo in DEMOS:
                http_predict(http, server.url, demo, inputs.next(demo))


def loaded_stage(server: Server, settings: Settings, inputs: Inputs) -> dict[str, Any]:
    """Memory with everything loaded and idle CPU, this app alone."""
    out: dict[str, Any] = {}
    load_everything(server, inputs)
    server.remember_children()
    time.sleep(3)
    out["loaded_memory"] = tree_memory(server.pid)
    # Idle means at rest: both apps wait out the hub's quiet time (--queue-rest-after, 10 s) first.
    time.sleep(REST_AFTER_S)
    cpu_before = tree_cpu(server.pid)
    idle_started = time.perf_counter()
    time.sleep(settings.idle_s)
    out["idle_cpu"] = (tree_cpu(server.pid) - cpu_before) / (time.perf_counter() - idle_started)
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:  # what resting costs the next caller
        out["after_rest_s"] = timed(lambda: http_predict(http, server.url, "questions", inputs.next("questions")))
    mem = out["loaded_memory"]
    log(f"{server.name}: all loaded: PSS {mem['pss'] / 2**20:.0f} MiB, RSS {mem['rss'] / 2**20:.0f} MiB, "
        f"USS {mem['uss'] / 2**20:.0f} MiB in {mem['processes']} processes; idle CPU "
        f"{out['idle_cpu'] * 100:.1f} % of a core")
    out["loadavg"] = os.getloadavg()[0]
    return out


def run_round(index: int, settings: Settings) -> dict[str, Any]:
    order = ("baseline", "hub") if index % 2 == 0 else ("hub", "baseline")
    result: dict[str, Any] = {"order": order, "baseline": {"starts": []}, "hub": {"starts": []}}
    inputs = {app: Inputs() for app in order}
    for i, demo in enumerate(DEMOS):
        last = i == len(DEMOS) - 1
        for app in order:
            sample, server = fresh_start(app, demo, settings, inputs[app], keep=last)
            result[app]["starts"].append(sample)
            if server is not None:
                try:
                    result[app].update(loaded_stage(server, settings, inputs[app]))
                finally:
                    server.stop()
    for app, figures in side_by_side(order, settings, inputs, seed=index).items():
        result[app].update(figures)
    return result


def side_by_side(order: tuple[str, str], settings: Settings, inputs: dict[str, Inputs],
                 seed: int) -> dict[str, dict]:
    """Both apps started and loaded, only one awake at a time (the other's whole
    tree SIGSTOPped), the order alternated block by block: first warm latency,
    then the mixed stream. Measured minutes apart, as the other stages are, a
    warm p50 drifted 10 % with the machine and the app's own CPU-seconds per
    answer 15 % between rounds; side by side the drift falls on both alike."""
    with loaded_and_paused(order, settings, inputs) as servers:
        out = {app: {"warm": warm} for app, warm in warm_side_by_side(order, servers, settings, inputs).items()}
        for app, figures in stream_side_by_side(order, servers, settings, seed).items():
            out[app].update(figures)
        return out


@contextmanager
def loaded_and_paused(order: tuple[str, ...], settings: Settings,
                      inputs: dict[str, Inputs]) -> Iterator[dict[str, Server]]:
    """Both apps started, every model loaded, each tree paused; ended by PID on the way out."""
    servers: dict[str, Server] = {}
    try:
        for app in order:
            servers[app] = start(app, settings)
        for app in order:
            servers[app].wait_page()
            load_everything(servers[app], inputs[app])
            servers[app].pause()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def stream_side_by_side(order: tuple[str, str], servers: dict[str, Server], settings: Settings,
                        seed: int) -> dict[str, dict]:
    """The mixed stream in STREAM_BLOCKS awake blocks per app, after one
    unmeasured warm-up block each; every block ends with its requests answered
    before the app is paused again."""
    seconds = settings.throughput_s / STREAM_BLOCKS
    warmups: dict[str, dict] = {}
    for app in order:
        with servers[app].awake(settle_s=0) as server:
            warmups[app] = mixed_stream(server.url, server.pid, min(STREAM_WARMUP_S, seconds), seed + 99)
    blocks: dict[str, list[dict]] = {app: [] for app in order}
    for block in range(STREAM_BLOCKS):
        for app in (order if block % 2 == 0 else order[::-1]):
            with servers[app].awake() as server:
                blocks[app].append(mixed_stream(server.url, server.pid, seconds, seed * 100 + block))
    out: dict[str, dict] = {}
    for app in order:
        tp = stream_summary(blocks[app])
        warm = {k: v for k, v in warmups[app].items() if k != "latencies"}
        # what the stream left loaded (the hub's extra copies of busy models end a minute later)
        out[app] = {"throughput": tp, "stream_warmup": warm, "stream_memory": tree_memory(servers[app].pid)}
        log(f"{app}: stream warm-up {warm['answers_per_s']:.2f}/s, {warm['cpu_s_per_answer']:.3f} CPU-s each; "
            f"mixed stream: {tp['answered']} answers in {tp['seconds']:.0f} s "
            f"({tp['answers_per_s']:.2f}/s; blocks " + ", ".join(f"{v:.1f}" for v in tp["block_answers_per_s"])
            + f"), {tp['cpu_s_per_answer']:.3f} CPU-s each, {len(tp['errors'])} errors")
    return out


def warm_side_by_side(order: tuple[str, str], servers: dict[str, Server], settings: Settings,
                      inputs: dict[str, Inputs]) -> dict[str, dict]:
    """Warm latency, one request at a time, plain HTTP API and gradio_client, in
    blocks of WARM_BLOCK calls per demo and client kind; the apps come in paused
    and leave paused."""
    from gradio_client import Client, handle_file

    clients: dict[str, Any] = {}
    out: dict[str, dict] = {app: {d: {"http": [], "client": []} for d in DEMOS} for app in order}
    try:
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
            for app in order:
                with servers[app].awake(settle_s=0) as server:
                    clients[app] = Client(server.url + "/", verbose=False)
            blocks = -(-settings.warm_calls // WARM_BLOCK)
            for block in range(blocks):
                calls = min(WARM_BLOCK, settings.warm_calls - block * WARM_BLOCK)
                for app in (order if block % 2 == 0 else order[::-1]):
                    client = clients[app]
                    with servers[app].awake() as server:
                        for demo in DEMOS:
                            # unmeasured: wakes a resting queue and the caches the pause left cold
                            http_predict(http, server.url, demo, inputs[app].next(demo))

                            def call_client() -> None:
                                value = inputs[app].next(demo)
                                args = (value, *TEXT_ARGS[demo]) if demo in TEXT_ARGS else (handle_file(value),)
                                client.predict(*args, api_name=f"/{demo}")

                            for _ in range(calls):
                                out[app][demo]["http"].append(
                                    timed(lambda: http_predict(http, server.url, demo, inputs[app].next(demo))))
                            for _ in range(calls):
                                out[app][demo]["client"].append(timed(call_client))
        for app in order:
            for demo in DEMOS:
                w = out[app][demo]
                log(f"{app}: warm {demo}: HTTP p50 {statistics.median(w['http']) * 1000:.0f} ms, "
                    f"gradio_client p50 {statistics.median(w['client']) * 1000:.0f} ms")
    finally:
        for client in clients.values():
            client.close()
    return out


# ---------------------------------------------------------------- the table

@dataclass(frozen=True)
class Figure:
    label: str
    unit: str
    get: Callable[[dict], float | None]  # one app's value in one round
    higher_is_better: bool = False


def _start_value(key: str, demo: str | None = None) -> Callable[[dict], float | None]:
    def get(app: dict) -> float | None:
        values = [s[key] for s in app.get("starts", []) if demo is None or s["first_demo"] == demo]
        return statistics.median(values) if values else None
    return get


def _warm(demo: str, via: str, q: float) -> Callable[[dict], float | None]:
    def get(app: dict) -> float | None:
        values = app.get("warm", {}).get(demo, {}).get(via)
        return percentile(values, q) * 1000 if values else None
    return get


def _path(*keys: str, scale: float = 1.0) -> Callable[[dict], float | None]:
    def get(app: dict) -> float | None:
        value: Any = app
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return None if value is None else value * scale
    return get


def _rest_pss(app: dict) -> float | None:
    values = [s["rest_memory"]["pss"] for s in app.get("starts", [])]
    return statistics.median(values) / 2**20 if values else None


FIGURES = [
    Figure("page ready after start (GET / 200)", "s", _start_value("page_s")),
    *[Figure(f"first answer from a fresh process, {d} (start → answer, HTTP)", "s",
             _start_value("first_answer_s", d)) for d in DEMOS],
    *[Figure(f"warm {d}, {name} {q_name}", "ms", _warm(d, via, q))
      for d in DEMOS for via, name in (("http", "HTTP API"), ("client", "gradio_client"))
      for q_name, q in (("p50", 0.5), ("p95", 0.95))],
    Figure("memory at rest (page served, no request), PSS of the tree", "MiB", _rest_pss),
    *[Figure(f"memory, every demo loaded, {m.upper()} of the tree", "MiB", _path("loaded_memory", m, scale=2**-20))
      for m in ("pss", "rss", "uss")],
    Figure("idle CPU, every demo loaded", "% of a core", _path("idle_cpu", scale=100)),
    Figure("first questions answer after the idle time (HTTP)", "ms", _path("after_rest_s", scale=1000)),
    Figure(f"mixed stream, {CLIENTS} clients, answers per second (higher is better)", "/s",
           _path("throughput", "answers_per_s"), higher_is_better=True),
    Figure("server CPU-seconds per answered request (mixed stream)", "s", _path("throughput", "cpu_s_per_answer")),
    *[Figure(f"mixed stream, {d} latency p50", "s", _path("throughput", "per_demo", d, "p50")) for d in DEMOS],
    *[Figure(f"memory right after the mixed stream, {m.upper()} of the tree", "MiB",
             _path("stream_memory", m, scale=2**-20)) for m in ("pss", "rss")],
]


def fmt(value: float | None) -> str:
    if value is None or value != value:
        return "–"
    if value == float("inf"):
        return "∞"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(rounds: list[dict]) -> str:
    n = len(rounds)
    lines = [f"| figure | hub | one-process app | hub / app, median (min–max over {n} round{'s' * (n != 1)}) |",
             "|---|---|---|---|"]
    for fig in FIGURES:
        hub = [fig.get(r["hub"]) for r in rounds]
        base = [fig.get(r["baseline"]) for r in rounds]
        ratios = []
        for h, b in zip(hub, base):
            if h is None or b is None:
                continue
            ratios.append(h / b if b else (float("inf") if h else 1.0))
        hub_v = [v for v in hub if v is not None]
        base_v = [v for v in base if v is not None]
        ratio = (f"**{fmt(statistics.median(ratios))}** ({fmt(min(ratios))}–{fmt(max(ratios))})"
                 if ratios else "–")
        lines.append(f"| {fig.label} | {fmt(statistics.median(hub_v)) if hub_v else '–'} {fig.unit} | "
                     f"{fmt(statistics.median(base_v)) if base_v else '–'} {fig.unit} | {ratio} |")
    errors = {app: sum(len(r[app].get("throughput", {}).get("errors", [])) for r in rounds)
              for app in ("hub", "baseline")}
    lines.append(f"| errors during the mixed streams (all rounds) | {errors['hub']} | {errors['baseline']} | |")
    return "\n".join(lines)


# ---------------------------------------------------------------- main

def describe_code(root: Path) -> str:
    """Which code both apps ran: the checkout, its commit and whether it had local edits."""
    def git(*args: str) -> str:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return f"{root} (not a git checkout)"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{root} at {commit}" + (" plus uncommitted changes" if dirty else "")


def prepare(settings: Settings) -> None:
    """Write any missing placeholder folder once, before the clock starts (both apps read them)."""
    cmd = [PYTHON, str(ROOT / "bench" / "baseline_app.py"), "--prepare", "--root", str(settings.root),
           "--cache-dir", str(settings.cache_dir)]
    proc = subprocess.run(cmd, cwd=settings.root, env=app_env("baseline", settings), capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"preparing the model folders failed:\n{proc.stderr[-3000:]}")


def _glue_hub_args(argv: list[str]) -> list[str]:
    """`--hub-args --idle-ttl` would read as two options to argparse; pass it as `--hub-args=--idle-ttl`."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--hub-args" and i + 1 < len(argv):
            out.append(f"--hub-args={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--throughput-seconds", type=float, default=60.0)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--warm-calls", type=int, default=40, help="per demo, per client kind")
    parser.add_argument("--hub-args", default=DEFAULT_HUB_ARGS,
                        help=f"flags passed to hub.py (default: {DEFAULT_HUB_ARGS!r})")
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="the checkout whose hub.py, demos/ and models/ both apps serve (default: this one)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="both apps read placeholder folders from <cache-dir>/placeholders "
                             "(default: <root>/.cache, the hub's own default)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 round, 5 warm calls, 10 s idle, 20 s stream (~5 min)")
    parser.add_argument("--json", type=Path, help="also write every raw sample here")
    parser.add_argument("--table-from", type=Path, metavar="JSON",
                        help="print the report of an earlier run from its --json file, run nothing")
    args = parser.parse_args(_glue_hub_args(sys.argv[1:] if argv is None else argv))
    if args.table_from:
        saved = json.loads(args.table_from.read_text())
        report(saved["meta"], saved["rounds"])
        return 0
    if args.quick:
        args.rounds, args.warm_calls, args.idle_seconds, args.throughput_seconds = 1, 5, 10.0, 20.0
    if args.rounds < 1 or args.warm_calls < 1 or args.throughput_seconds <= 0 or args.idle_seconds <= 0:
        parser.error("--rounds and --warm-calls must be at least 1, the durations positive")
    if not (args.root / "hub.py").is_file():
        parser.error(f"--root {args.root} has no hub.py")
    missing = [p for photos in PHOTOS.values() for p in photos if not (IMAGES / p).is_file()]
    if missing:
        parser.error(f"missing photos under {IMAGES}: {', '.join(missing)}")

    workdir = Path(tempfile.mkdtemp(prefix="vs-baseline-"))
    os.environ["GRADIO_TEMP_DIR"] = str(workdir / "gradio-client")  # gradio_client downloads go here
    tempfile.tempdir = str(workdir)  # and the empty folder it leaves per download (gradio_client 2.7)
    settings = Settings(rounds=args.rounds, warm_calls=args.warm_calls, idle_s=args.idle_seconds,
                        throughput_s=args.throughput_seconds, hub_args=shlex.split(args.hub_args),
                        root=args.root.resolve(), cache_dir=(args.cache_dir or args.root / ".cache").resolve(),
                        workdir=workdir)
    # A SIGTERM ends the run through the same `finally` blocks as an error: no server is left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    meta: dict[str, Any] = {
        "command": " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/vs_baseline.py", *sys.argv[1:]]),
        "code": describe_code(args.root.resolve()), "hub_args": settings.hub_args,
        "date": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC", "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(), "rounds_asked": settings.rounds, "warm_calls": settings.warm_calls,
        "idle_s": settings.idle_s, "throughput_s": settings.throughput_s, "stream_blocks": STREAM_BLOCKS,
        "stream_warmup_s": STREAM_WARMUP_S,
    }
    started = time.perf_counter()
    rounds: list[dict] = []
    failures: list[str] = []
    try:
        log("preparing placeholder model folders (once)")
        prepare(settings)
        for index in range(settings.rounds):
            log(f"round {index + 1} of {settings.rounds}")
            try:
                rounds.append(run_round(index, settings))
            except (RuntimeError, httpx.HTTPError, CallFailed, OSError) as exc:
                failures.append(f"round {index + 1}: {type(exc).__name__}: {exc}")
                log(f"round {index + 1} failed: {exc}")
                if not rounds:
                    break  # the first round failing is a setup problem (bad --hub-args...): do not repeat it
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    meta.update(elapsed_s=time.perf_counter() - started, loadavg_end=os.getloadavg(), failures=failures,
                uptime=subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    report(meta, rounds)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rounds": rounds}, indent=1, default=str))
    return 0 if rounds and not failures else 1


def report(meta: dict[str, Any], rounds: list[dict]) -> None:
    """The markdown to paste into docs/benchmarks.md: what ran, on what machine, and the table."""
    stage_loads = [s["loadavg"] for r in rounds for app in ("hub", "baseline")
                   for s in [*r[app].get("starts", []), r[app]] if "loadavg" in s]
    start, end = meta["loadavg_start"], meta["loadavg_end"]
    print(f"Command: `{meta['command']}`  ")
    print(f"Code: {meta['code']}.  ")
    print(f"Hub: `hub.py {' '.join(meta['hub_args'])}`; baseline: `bench/baseline_app.py` "
          f"(one process, torch + torchvision + TensorFlow, all models loaded at startup).  ")
    during = f", {min(stage_loads):.1f}–{max(stage_loads):.1f} during the run" if stage_loads else ""
    print(f"Date: {meta['date']}; {meta['cpus']} CPUs; load average (1 min) {start[0]:.2f} at start, "
          f"{end[0]:.2f} at end{during} (`uptime` at the end: {meta['uptime']}).  ")
    print(f"Rounds: {len(rounds)} of {meta['rounds_asked']}; warm calls {meta['warm_calls']} per demo and client; "
          f"idle {meta['idle_s']:.0f} s; mixed stream {meta['throughput_s']:.0f} s per app "
          f"({meta.get('stream_blocks', 1)} awake block(s) side by side, after {meta.get('stream_warmup_s', 0):.0f} s "
          "unmeasured); "
          f"run took {meta['elapsed_s'] / 60:.1f} min.")
    print()
    if rounds:
        print(table(rounds))
    for failure in meta["failures"]:
        print(f"\nFAILED {failure}")


if __name__ == "__main__":
    sys.exit(main())
