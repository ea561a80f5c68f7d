"""Fault-and-abuse soak: can cheap requests and dying workers push the hub around?

One hub on 127.0.0.1 (`--max-models 2`, its own GRADIO_TEMP_DIR), 8 clients
sending mixed traffic to the real demos, a worker of *that* hub sent `kill -9`
or `kill -STOP` every 30 s, and a stream of hostile inputs (data: URL image,
huge PNG, 60000x1 PNG, wrong types, invisible text, lone surrogates, a 5 MB
question, an unknown endpoint, a body whose "data" is not a list, the direct
/gradio_api/run route, a corrupt JPEG, a decompression-bomb PNG). Every request is classified as answered OK,
a clear error (a sentence without exception names, pydantic text or paths),
an unclear error, or hung (no answer by its deadline + 10 s).

    .venv/bin/python bench/abuse_soak.py --quick           # 1 minute
    .venv/bin/python bench/abuse_soak.py --minutes 10      # the figures in docs/benchmarks.md

Must be 0, else the exit status is 1: hub restarts, hung requests, unclear
errors, processes left after shutdown, files left in the hub's temp folder;
and the hub's RSS drift (median of the first minute vs the last) must be
<= 20 MB. Bounded in time and count; ends only processes its own hub started.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import httpx  # noqa: E402
import psutil  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from PIL import Image  # noqa: E402

from support import CASSAVA_PHOTOS, DURIAN_PHOTO, FIXTURES, start_hub  # noqa: E402

ABUSE_DEMOS = FIXTURES / "abusedemos"

#: What a person must never be shown: exception names, pydantic text, tracebacks, server paths.
INTERNALS = re.compile(r"[A-Z][a-zA-Z]+(Error|Exception)\b|pydantic|Traceback|\[type=|"
                       r"site-packages|/work/|/tmp/|/home/|\.py\b|validation error")
GENERIC = "has not enabled verbose error reporting"

RSS_DRIFT_LIMIT_MB = 20.0


def readable(message: object) -> bool:
    """A sentence a person can act on: some words, no internals."""
    text = str(message or "").strip()
    return len(text.split()) >= 3 and not INTERNALS.search(text) and GENERIC not in text


# ------------------------------------------------------------------ what to send

@dataclass(frozen=True)
class Targets:
    """Which endpoints carry the traffic and the hostile inputs."""

    text: tuple[str, ...]
    image: tuple[str, ...]
    questions: tuple[str, ...]
    photos: dict[str, tuple[str, ...]]


def real_targets() -> Targets:
    return Targets(
        text=("questions",), image=("cassava", "durian"),
        questions=("Who wrote Hamlet?", "How far is the Moon from the Earth?", "What is the capital of France?",
                   "Why is the sky blue?", "When did the Berlin Wall fall?", "What does NASA stand for?"),
        photos={"cassava": tuple(str(p) for p in CASSAVA_PHOTOS), "durian": (str(DURIAN_PHOTO),)},
    )


def fixture_targets() -> Targets:
    photos = tuple(str(p) for p in [*CASSAVA_PHOTOS, DURIAN_PHOTO])  # the project's own examples
    return Targets(text=("words", "tally"), image=("snaps",),
                   questions=("some words", "a few more words here"), photos={"snaps": photos})


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header for a huge image with almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@dataclass(frozen=True)
class Hostile:
    """One hostile request: `how` is 'client' (gradio_client), 'call' (raw JSON to
    the queued /gradio_api/call route) or 'post' (raw JSON to any path)."""

    name: str
    how: str
    api: str
    payload: object


def hostile_inputs(work: Path, targets: Targets) -> list[Hostile]:
    """Write the hostile files under `work` and list the requests."""
    image = targets.image[0]
    text = targets.text[0]
    big = work / "huge-12000x12000.png"
    Image.new("L", (12000, 12000), 0).save(big, optimize=False)  # ~140 KB on disk, 432 MB as RGB
    strip = work / "strip-60000x1.png"
    Image.new("RGB", (60000, 1), (40, 160, 40)).save(strip)
    corrupt = work / "corrupt.jpg"
    corrupt.write_bytes(Path(targets.photos[image][0]).read_bytes()[:2000])
    bomb = work / "bomb-claims-30000x30000.png"
    bomb.write_bytes(png_claiming(30000, 30000))
    dense = work / "bomb-10000x10000-black.png"
    Image.new("1", (10000, 10000), 0).save(dense)  # 100 megapixels in ~20 KB
    data_url = "data:image/png;base64," + base64.b64encode(big.read_bytes()).decode()
    meta = {"_type": "gradio.FileData"}
    return [
        Hostile("data: URL image 12000x12000", "call", image, [{"url": data_url, "meta": meta}]),
        Hostile("huge PNG 12000x12000", "client", image, handle_file(str(big))),
        Hostile("60000x1 PNG", "client", image, handle_file(str(strip))),
        Hostile("number to an image endpoint", "call", image, [42]),
        Hostile("string to an image endpoint", "call", image, ["hello"]),
        Hostile("server path to an image endpoint", "call", image, [{"path": "/etc/hostname", "meta": meta}]),
        Hostile("number as text", "call", text, [42]),
        Hostile("list as text", "call", text, [[1, 2]]),
        Hostile("object as text", "call", text, [{"a": 1}]),
        Hostile("invisible text", "call", text, ["\u200b\u200b\u0301\u0007"]),
        Hostile("lone surrogates", "call", text, ["Who wrote \ud800Hamlet?\udfff"]),
        Hostile("5 MB text", "call", text, ["why " * 1_310_720]),
        Hostile("unknown endpoint", "call", "no_such_demo", ["hello"]),
        Hostile("body whose data is not a list", "post", f"/gradio_api/call/{text}", {"data": "hello"}),
        Hostile("direct /gradio_api/run route", "post", f"/gradio_api/run/{text}", {"data": ["hello"]}),
        Hostile("corrupt JPEG", "client", image, handle_file(str(corrupt))),
        Hostile("PNG claiming 30000x30000", "client", image, handle_file(str(bomb))),
        Hostile("100-megapixel black PNG (20 KB)", "client", image, handle_file(str(dense))),
    ]


# ------------------------------------------------------------------ how it went

@dataclass
class Outcome:
    kind: str  # ok | clear | unclear | hung
    seconds: float
    message: str = ""


class Tally:
    """Outcomes by (stream, case), thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_case: dict[tuple[str, str], Counter] = defaultdict(Counter)
        self.seconds: dict[str, list[float]] = defaultdict(list)
        self.unclear: list[str] = []
        self.clear: Counter = Counter()

    def add(self, stream: str, case: str, outcome: Outcome) -> None:
        with self._lock:
            self.by_case[(stream, case)][outcome.kind] += 1
            if outcome.kind != "hung":
                self.seconds[case].append(outcome.seconds)
            if outcome.kind == "clear":
                self.clear[re.sub(r"\d+", "N", outcome.message)[:150]] += 1
            if outcome.kind in ("unclear", "hung") and len(self.unclear) < 40:
                self.unclear.append(f"{stream} {case}: {outcome.kind}: {outcome.message[:300]!r}")

    def totals(self, stream: str | None = None) -> Counter:
        total: Counter = Counter()
        with self._lock:
            for (s, _), counts in self.by_case.items():
                if stream is None or s == stream:
                    total.update(counts)
        return total


def classify_error(message: str, started: float) -> Outcome:
    return Outcome("clear" if readable(message) else "unclear", time.monotonic() - started, message)


def call_client(client: Client, api: str, args: tuple, limit: float) -> Outcome:
    started = time.monotonic()
    job = client.submit(*args, api_name=f"/{api}")
    try:
        job.result(timeout=limit)
    except AppError as exc:
        return classify_error(str(exc), started)
    except TimeoutError:
        job.cancel()
        return Outcome("hung", time.monotonic() - started, f"no answer in {limit:.0f} s")
    except Exception as exc:  # noqa: BLE001 - anything else the client met is not a clear answer
        return Outcome("unclear", time.monotonic() - started, f"{type(exc).__name__}: {exc}")
    return Outcome("ok", time.monotonic() - started)


def _refused(response: httpx.Response, started: float) -> Outcome:
    """A non-2xx answer: a 4xx carrying a sentence is a clear refusal."""
    body = response.text
    try:
        parsed = json.loads(body)
        message = (parsed.get("error") or parsed.get("detail")) if isinstance(parsed, dict) else body
    except ValueError:
        message = body
    if 400 <= response.status_code < 500 and readable(message):
        return Outcome("clear", time.monotonic() - started, f"HTTP {response.status_code}: {message}")
    return Outcome("unclear", time.monotonic() - started, f"HTTP {response.status_code}: {body[:200]}")


def post_json(http: httpx.Client, path: str, payload: object, limit: float) -> Outcome:
    """POST JSON to any path; 2xx is an answer, 4xx with a sentence a clear refusal."""
    started = time.monotonic()
    try:
        response = http.post(path, content=json.dumps(payload).encode(),
                             headers={"Content-Type": "application/json"}, timeout=limit)
    except httpx.TimeoutException:
        return Outcome("hung", time.monotonic() - started, f"no answer in {limit:.0f} s")
    except httpx.HTTPError as exc:
        return Outcome("unclear", time.monotonic() - started, f"{type(exc).__name__}: {exc}")
    if response.is_success:
        return Outcome("ok", time.monotonic() - started)
    return _refused(response, started)


def call_raw(http: httpx.Client, api: str, data: list, limit: float) -> Outcome:
    """The queued API with a JSON body gradio_client would not send (a lone
    surrogate, a data: URL, a wrong type), then its event stream, within `limit`."""
    started = time.monotonic()
    deadline = started + limit
    body = json.dumps({"data": data}).encode()  # ensure_ascii: a lone surrogate travels as \\ud800
    try:
        response = http.post(f"gradio_api/call/{api}", content=body,
                             headers={"Content-Type": "application/json"}, timeout=min(30.0, limit))
        if not response.is_success:
            return _refused(response, started)
        event_id = response.json()["event_id"]
        # Gradio sends a heartbeat every 15 s, so reads on a live stream never wait long.
        with http.stream("GET", f"gradio_api/call/{api}/{event_id}",
                         timeout=max(1.0, deadline - time.monotonic())) as stream:
            event = None
            for line in stream.iter_lines():
                if time.monotonic() >= deadline:
                    break
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event in ("complete", "error"):
                    if event == "complete":
                        return Outcome("ok", time.monotonic() - started)
                    payload = json.loads(line[6:]) if line[6:] not in ("", "null") else None
                    message = payload.get("error") if isinstance(payload, dict) else payload
                    return classify_error(str(message or ""), started)
        if time.monotonic() >= deadline:
            return Outcome("hung", time.monotonic() - started, f"no answer in {limit:.0f} s")
        return Outcome("unclear", time.monotonic() - started, "the stream ended without a result")
    except httpx.TimeoutException:
        return Outcome("hung", time.monotonic() - started, f"no answer in {limit:.0f} s")
    except httpx.HTTPError as exc:
        return Outcome("unclear", time.monotonic() - started, f"{type(exc).__name__}: {exc}")


# ------------------------------------------------------------------ the run

@dataclass
class Settings:
    seconds: float = 600.0
    clients: int = 8
    fault_every_s: float = 30.0
    hostile_every_s: float = 2.0
    deadline_s: float | None = None  # default: the slowest demo's predict deadline + 30 s
    max_models: int = 2
    demos_dir: Path | None = None  # None: the real demos
    targets: Targets | None = None
    cache_dir: Path = ROOT / ".cache" / "abuse-hub"
    seed: int = 0
    verbose: bool = True
    hub_args: tuple[str, ...] = ()  # more hub flags (bench/bench_eviction.py: --eviction lru|cost)


@dataclass
class Report:
    seconds: float
    hub_restarts: int
    requests: int
    ok: int
    clear_errors: int
    unclear_errors: int
    hung: int
    hostile: dict
    traffic: dict
    faults: list
    workers_seen: int
    leaked_processes: int
    temp_entries_max: int
    leaked_temp_files: int
    rss_first_mb: float
    rss_last_mb: float
    rss_drift_mb: float
    rss_max_mb: float
    rss_peak_over_start_mb: float
    deadline_s: float
    latency_s: dict
    examples_of_failures: list = field(default_factory=list)
    clear_messages: dict = field(default_factory=dict)
    #: the hub's own counters at the end (/metrics): loads and evictions per model
    loads: dict = field(default_factory=dict)
    evictions: dict = field(default_factory=dict)

    def failures(self) -> list[str]:
        bad = []
        for name in ("hub_restarts", "hung", "unclear_errors", "leaked_processes", "leaked_temp_files"):
            if getattr(self, name):
                bad.append(f"{name} = {getattr(self, name)} (must be 0)")
        if self.rss_drift_mb > RSS_DRIFT_LIMIT_MB:
            bad.append(f"hub RSS drift {self.rss_drift_mb:+.1f} MB (limit {RSS_DRIFT_LIMIT_MB:.0f} MB)")
        return bad


def _workers(hub_pid: int) -> list[psutil.Process]:
    """The hub's own worker processes (direct children running demohub's worker)."""
    found = []
    try:
        for child in psutil.Process(hub_pid).children(recursive=False):
            try:
                if any("demohub" in part for part in child.cmdline()):
                    found.append(child)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
    except psutil.NoSuchProcess:
        pass
    return found


def _default_deadline(demos_dir: Path) -> float:
    from demohub.discovery import discover

    return max(spec.predict_timeout_s for spec in discover(demos_dir)) + 30.0


def _count_entries(folder: Path) -> int:
    return sum(len(dirs) + len(files) for _, dirs, files in os.walk(folder)) if folder.exists() else 0


def run(settings: Settings) -> Report:
    """One soak; every file it wrote is gone when it returns."""
    work = Path(tempfile.mkdtemp(prefix="abuse-soak-"))
    try:
        return Soak(settings, work).run()
    finally:
        shutil.rmtree(work, ignore_errors=True)


class Soak:
    """One hub and the threads that push it: `clients` traffic threads, one
    hostile stream, one fault injector; the calling thread samples the hub.
    Every thread ends by `ends` plus one request's limit."""

    def __init__(self, settings: Settings, work: Path):
        self.settings = settings
        self.counters: dict[str, dict[str, float]] = {}
        demos_dir = settings.demos_dir or ROOT / "demos"
        self.targets = settings.targets or (real_targets() if settings.demos_dir is None else fixture_targets())
        self.deadline = settings.deadline_s or _default_deadline(demos_dir)
        self.limit = self.deadline + 10.0
        self.say = print if settings.verbose else (lambda *a, **k: None)
        self.gradio_tmp = work / "gradio-tmp"
        self.gradio_tmp.mkdir()
        (work / "inputs").mkdir()
        self.hostile = hostile_inputs(work / "inputs", self.targets)
        self.tally = Tally()
        self.stop = threading.Event()
        self.seen: dict[int, float] = {}  # every process the hub started -> its start time
        self.rss: list[tuple[float, float]] = []  # (seconds since start, hub RSS MB)
        self.temp_max = 0
        self.faults: list[dict] = []
        self.restarts = 0
        self.hub = None
        self.started = self.ends = 0.0

    # -- the parts that run in threads

    def _guarded(self, body, *args) -> None:
        """A thread that dies is a failure of the bench, shown as one."""
        try:
            body(*args)
        except Exception as exc:  # noqa: BLE001 - reported in the figures, not lost
            self.tally.add("bench", f"thread {threading.current_thread().name} failed",
                           Outcome("unclear", 0.0, f"{type(exc).__name__}: {exc}"))

    def traffic(self, index: int) -> None:
        client = Client(self.hub.url, verbose=False, download_files=False)
        rng = random.Random(self.settings.seed * 1000 + index)
        apis = [*self.targets.text, *self.targets.text, *self.targets.image]  # half text, half images
        try:
            while not self.stop.is_set() and time.monotonic() < self.ends:
                api = rng.choice(apis)
                if api in self.targets.image:
                    args = (handle_file(rng.choice(self.targets.photos[api])),)
                else:
                    args = (rng.choice(self.targets.questions),)
                self.tally.add("traffic", api, call_client(client, api, args, self.limit))
        finally:
            client.close()

    def abuse(self) -> None:
        client = Client(self.hub.url, verbose=False, download_files=False)
        http = httpx.Client(base_url=self.hub.url)
        try:
            for case in itertools.cycle(self.hostile):
                if self.stop.is_set() or time.monotonic() >= self.ends:
                    return
                if case.how == "client":
                    outcome = call_client(client, case.api, (case.payload,), self.limit)
                elif case.how == "call":
                    outcome = call_raw(http, case.api, case.payload, self.limit)
                else:
                    outcome = post_json(http, case.api, case.payload, self.limit)
                self.tally.add("hostile", case.name, outcome)
                self.stop.wait(self.settings.hostile_every_s)
        finally:
            http.close()
            client.close()

    def inject_faults(self) -> None:
        """kill -9 or kill -STOP, alternately, a random worker of our hub."""
        rng = random.Random(self.settings.seed)
        signals = itertools.cycle([signal.SIGKILL, signal.SIGSTOP])
        next_at = self.started + self.settings.fault_every_s / 2
        while not self.stop.wait(max(0.0, next_at - time.monotonic())):
            if time.monotonic() >= self.ends:
                return
            next_at += self.settings.fault_every_s
            now = round(time.monotonic() - self.started, 1)
            workers = _workers(self.hub.pid)
            if not workers:
                self.faults.append({"t": now, "signal": None, "pid": None})
                continue
            victim, sig = rng.choice(workers), next(signals)
            try:
                runtime = next((a for a in victim.cmdline() if a.endswith(".runtime")), "?")
                victim.send_signal(sig)
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
            self.faults.append({"t": now, "signal": sig.name, "pid": victim.pid, "runtime": runtime})
            self.say(f"  t={now:5.0f} s  {sig.name} worker {victim.pid} ({runtime})")

    # -- the calling thread

    def _note_processes(self) -> None:
        try:
            children = psutil.Process(self.hub.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for proc in children:
            try:
                self.seen.setdefault(proc.pid, proc.create_time())
            except psutil.NoSuchProcess:
                pass

    def _sample(self) -> None:
        self._note_processes()
        try:
            self.rss.append((time.monotonic() - self.started, psutil.Process(self.hub.pid).memory_info().rss / 2**20))
        except psutil.NoSuchProcess:
            pass
        self.temp_max = max(self.temp_max, _count_entries(self.gradio_tmp))

    def _warm_up(self) -> None:
        """One call per demo, so the measured window starts with imports and first loads done."""
        client = Client(self.hub.url, verbose=False, download_files=False)
        try:
            for api in (*self.targets.text, *self.targets.image):
                args = ((handle_file(self.targets.photos[api][0]),) if api in self.targets.image
                        else (self.targets.questions[0],))
                self.say(f"warm-up {api}: {call_client(client, api, args, 300).kind}")
        finally:
            client.close()

    def _leftovers(self) -> list[psutil.Process]:
        """Processes the hub started that are still there 10 s after it stopped."""
        leaked = []
        give_up = time.monotonic() + 10
        for pid, created in self.seen.items():
            while True:
                try:
                    proc = psutil.Process(pid)
                    alive = proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE
                except psutil.NoSuchProcess:
                    alive = False
                if not alive:
                    break
                if time.monotonic() > give_up:
                    leaked.append(proc)
                    break
                time.sleep(0.2)
        return leaked

    def run(self) -> Report:
        # its clients all come from 127.0.0.1 and stand for many visitors: no per-visitor limit
        hub_args = ["--max-models", str(self.settings.max_models), "--idle-ttl", "0", "--per-client-queue", "0"]
        if self.settings.demos_dir is not None:
            hub_args += ["--demos-dir", str(self.settings.demos_dir)]
        hub_args += list(self.settings.hub_args)
        self.hub = start_hub(*hub_args, env={"GRADIO_TEMP_DIR": str(self.gradio_tmp)}, timeout=180,
                             cache_dir=self.settings.cache_dir)
        self.say(f"hub pid {self.hub.pid} on {self.hub.url}, log {self.hub.log_path}; "
                 f"deadline {self.deadline:.0f} s")
        threads: list[threading.Thread] = []
        try:
            self._warm_up()
            self.started = time.monotonic()
            self.ends = self.started + self.settings.seconds
            threads = [threading.Thread(target=self._guarded, args=(self.traffic, i), daemon=True,
                                        name=f"client-{i}") for i in range(self.settings.clients)]
            threads += [threading.Thread(target=self._guarded, args=(self.abuse,), daemon=True, name="abuse"),
                        threading.Thread(target=self._guarded, args=(self.inject_faults,), daemon=True,
                                         name="faults")]
            for thread in threads:
                thread.start()
            next_report = self.started + 30
            while any(t.is_alive() for t in threads[:-1]):
                if self.hub.proc.poll() is not None:
                    self.restarts = 1
                    self.say(f"the hub exited with {self.hub.proc.returncode}: stopping")
                    break
                self._sample()
                if time.monotonic() >= next_report:
                    next_report += 30
                    t = self.tally.totals()
                    self.say(f"  t={time.monotonic() - self.started:5.0f} s  ok {t['ok']}  clear {t['clear']}  "
                             f"unclear {t['unclear']}  hung {t['hung']}  hub RSS {self.rss[-1][1]:.0f} MB  "
                             f"workers {len(_workers(self.hub.pid))}  temp entries {self.temp_max}")
                time.sleep(1.0)
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(timeout=self.limit + 15)
            elapsed = time.monotonic() - self.started if self.started else 0.0
            self._note_processes()
            self.counters = _counters(self.hub)
            self.hub.stop()

        # After shutdown: every process the hub ever started must be gone, its temp folder empty.
        leaked = self._leftovers()
        for proc in leaked:  # ours to end: started by the hub this bench started
            self.say(f"leaked process {proc.pid}: {' '.join(proc.cmdline())[:120]}")
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        leaked_temp = _count_entries(self.gradio_tmp)
        if leaked_temp:
            left = sorted(str(p.relative_to(self.gradio_tmp)) for p in self.gradio_tmp.rglob("*"))
            self.say(f"left in the hub's temp folder: {left[:10]}")
        return self._report(elapsed, len(leaked), leaked_temp)

    def _report(self, elapsed: float, leaked: int, leaked_temp: int) -> Report:
        window = min(60.0, max(10.0, elapsed / 3))
        first = [mb for t, mb in self.rss if t <= window] or [0.0]
        last = [mb for t, mb in self.rss if t >= elapsed - window] or [0.0]
        totals = self.tally.totals()
        latency = {}
        for case, values in sorted(self.tally.seconds.items()):
            values = sorted(values)
            p95 = values[min(len(values) - 1, math.ceil(0.95 * len(values)) - 1)]
            latency[case] = {"n": len(values), "median": round(statistics.median(values), 2),
                             "p95": round(p95, 2), "max": round(values[-1], 2)}
        by_stream = {stream: {case: dict(c) for (s, case), c in sorted(self.tally.by_case.items()) if s == stream}
                     for stream in ("hostile", "traffic", "bench")}
        return Report(
            seconds=round(elapsed, 1), hub_restarts=self.restarts, requests=sum(totals.values()),
            ok=totals["ok"], clear_errors=totals["clear"], unclear_errors=totals["unclear"], hung=totals["hung"],
            hostile=by_stream["hostile"], traffic={**by_stream["traffic"], **by_stream["bench"]},
            faults=self.faults, workers_seen=len(self.seen), leaked_processes=leaked,
            temp_entries_max=self.temp_max, leaked_temp_files=leaked_temp,
            rss_first_mb=round(statistics.median(first), 1), rss_last_mb=round(statistics.median(last), 1),
            rss_drift_mb=round(statistics.median(last) - statistics.median(first), 1),
            rss_max_mb=round(max((mb for _, mb in self.rss), default=0.0), 1),
            rss_peak_over_start_mb=round(max((mb for _, mb in self.rss), default=0.0)
                                         - (self.rss[0][1] if self.rss else 0.0), 1),
            deadline_s=self.deadline, latency_s=latency, examples_of_failures=self.tally.unclear,
            clear_messages=dict(self.tally.clear.most_common(25)),
            loads=self.counters.get("loads", {}), evictions=self.counters.get("evictions", {}),
        )


def _counters(hub) -> dict[str, dict[str, float]]:
    """Loads and evictions per model from the hub's /metrics (empty if it does not answer)."""
    want = {"demohub_loads_total": "loads", "demohub_evictions_total": "evictions"}
    found: dict[str, dict[str, float]] = {"loads": {}, "evictions": {}}
    try:
        text = httpx.get(hub.url + "metrics", timeout=10).text
    except httpx.HTTPError:
        return found
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        if name in want and "}" in rest:
            labels = dict(part.split("=", 1) for part in rest.split("}")[0].split(",") if "=" in part)
            key = "/".join(v.strip('"') for v in labels.values())
            found[want[name]][key] = found[want[name]].get(key, 0) + float(line.rsplit(" ", 1)[1])
    return found


def print_report(report: Report) -> None:
    print(f"\n{report.seconds:.0f} s, {report.requests} requests: ok {report.ok}, clear errors "
          f"{report.clear_errors}, unclear errors {report.unclear_errors}, hung past {report.deadline_s:.0f}+10 s "
          f"{report.hung}")
    print(f"hub restarts {report.hub_restarts}; faults {len(report.faults)} "
          f"({', '.join(f['signal'] or 'no worker' for f in report.faults)}); worker processes seen "
          f"{report.workers_seen}, left after shutdown {report.leaked_processes}")
    print(f"hub temp folder: at most {report.temp_entries_max} entries, {report.leaked_temp_files} left after shutdown")
    print(f"hub RSS: median {report.rss_first_mb:.1f} MB (first window) -> {report.rss_last_mb:.1f} MB (last), "
          f"drift {report.rss_drift_mb:+.1f} MB, max {report.rss_max_mb:.1f} MB "
          f"({report.rss_peak_over_start_mb:+.1f} MB over the first sample)")
    print("\nhostile input                          ok  clear  unclear  hung")
    for case, counts in report.hostile.items():
        print(f"{case:38s} {counts.get('ok', 0):3d} {counts.get('clear', 0):6d} {counts.get('unclear', 0):8d} "
              f"{counts.get('hung', 0):5d}")
    print("\ntraffic      ok  clear  unclear  hung   median  p95  max (s)")
    for case, counts in report.traffic.items():
        lat = report.latency_s.get(case, {})
        print(f"{case:10s} {counts.get('ok', 0):4d} {counts.get('clear', 0):6d} {counts.get('unclear', 0):8d} "
              f"{counts.get('hung', 0):5d}   {lat.get('median', 0):6.2f} {lat.get('p95', 0):5.2f} {lat.get('max', 0):5.1f}")
    print("\nclear errors, by message (digits as N):")
    for message, count in report.clear_messages.items():
        print(f"{count:5d}  {message}")
    for line in report.examples_of_failures:
        print("  " + line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="a 1-minute run")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--fault-every", type=float, default=30.0, help="seconds between worker faults")
    parser.add_argument("--hostile-every", type=float, default=2.0, help="pause between hostile requests")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds a request may take (default: slowest predict deadline + 30)")
    parser.add_argument("--fixture-demos", action="store_true",
                        help="the model-free demos in tests/fixtures/abusedemos instead of the real ones")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    settings = Settings(seconds=60.0 if args.quick else args.minutes * 60, clients=args.clients,
                        fault_every_s=args.fault_every, hostile_every_s=args.hostile_every,
                        deadline_s=args.deadline, demos_dir=ABUSE_DEMOS if args.fixture_demos else None)
    report = run(settings)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2))
    failures = report.failures()
    for failure in failures:
        print(f"FAIL: {failure}")
    print("PASS" if not failures else "FAIL")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
