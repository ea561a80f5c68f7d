"""The Space's container image, built and run here with podman, as the Space runs it:
uid 1000, port 7860 (published on 127.0.0.1 only), a read-only file system but for
$HOME/.cache and /tmp, HF_HUB_OFFLINE=1 and no weights configured; then once more with
the questions model pinned to a repo on the stand-in Hub (tests/fakehub.py) on the host.

Minutes, root and podman: skipped unless HUB_IMAGE_CHECK=1 (scripts/image-check.sh sets
it after building the image; without HUB_IMAGE built, the first test builds it with
that script). Figures go to test-artifacts/image/figures.json and docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support import CASSAVA_PHOTOS, DURIAN_PHOTO, PROJECT_ROOT, RUN_DIR, free_port

pytestmark = [
    pytest.mark.image,
    pytest.mark.skipif(os.environ.get("HUB_IMAGE_CHECK") != "1",
                       reason="builds and runs the container image (minutes, podman as root): "
                              "set HUB_IMAGE_CHECK=1 or run scripts/image-check.sh"),
    pytest.mark.timeout(900),
]

IMAGE = os.environ.get("HUB_IMAGE", "localhost/demohub:check")
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "image"
FIGURES: dict = {}
MB = 2**20
#: what the demos answer with a placeholder (image demos) or the shipped model (questions)
CALLS = (("questions", "What is the capital of France?"), ("cassava", CASSAVA_PHOTOS[0]), ("durian", DURIAN_PHOTO),
         ("search", "a tool for cutting wood"))


def ulimits() -> list[str]:
    """Explicit limits below the machine's hard ones (podman's defaults are above them here)."""
    args = []
    for name, which, want in (("nofile", resource.RLIMIT_NOFILE, 16384), ("nproc", resource.RLIMIT_NPROC, 8192)):
        hard = resource.getrlimit(which)[1]
        n = want if hard == resource.RLIM_INFINITY else min(want, hard - 1)
        args += ["--ulimit", f"{name}={n}:{n}"]
    return args


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=check)


@dataclass
class Container:
    """One `podman run -d` of the image, removed (with its anonymous volume) at the end."""

    name: str
    port: int
    started: float = field(default_factory=time.monotonic)
    #: the files under $HOME/.cache/demohub once every model has loaded (path -> mtime)
    cache: dict[str, str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        out = podman("logs", self.name, check=False)
        return out.stdout + out.stderr

    def get(self, path: str, timeout: float = 10) -> tuple[int, str, bytes]:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()

    def running(self) -> bool:
        return podman("inspect", "--format", "{{.State.Running}}", self.name).stdout.strip() == "true"

    def wait_ready(self, timeout: float = 180) -> float:
        """Seconds from `podman start/run` until /healthz answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                pytest.fail(f"the container exited before it answered:\n{self.logs()[-4000:]}")
            try:
                if self.get("/healthz", timeout=2)[0] == 200:
                    return time.monotonic() - self.started
            except OSError:
                time.sleep(0.25)
        pytest.fail(f"/healthz did not answer within {timeout} s:\n{self.logs()[-4000:]}")

    def exec(self, *cmd: str) -> subprocess.CompletedProcess:
        return podman("exec", self.name, *cmd, check=False)

    def memory(self) -> dict[str, float]:
        """The container's memory (MiB) from its cgroup: the working set (usage less inactive
        file cache: what `podman stats`, Docker and Kubernetes report and limit) and the
        anonymous memory (rss) alone."""
        pid = podman("inspect", "--format", "{{.State.Pid}}", self.name).stdout.strip()
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        v1 = [line.split(":", 2)[2] for line in lines if line.split(":")[1] == "memory"]
        if v1:
            folder = Path("/sys/fs/cgroup/memory") / v1[0].lstrip("/")
            usage = int((folder / "memory.usage_in_bytes").read_text())
            stat = dict(line.split() for line in (folder / "memory.stat").read_text().splitlines())
            inactive, rss = int(stat["total_inactive_file"]), int(stat["total_rss"])
        else:
            folder = Path("/sys/fs/cgroup") / lines[0].split(":", 2)[2].lstrip("/")
            usage = int((folder / "memory.current").read_text())
            stat = dict(line.split() for line in (folder / "memory.stat").read_text().splitlines())
            inactive, rss = int(stat["inactive_file"]), int(stat["anon"])
        return {"working_set_mib": round((usage - inactive) / MB), "rss_mib": round(rss / MB)}

    def metrics(self) -> dict[str, float]:
        text = self.get("/metrics")[2].decode()
        return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(demohub_\S+) (\S+)$", text, re.M)}

    def client(self):
        from gradio_client import Client

        return Client(self.url + "/", verbose=False, download_files=RUN_DIR / "downloads")

    def remove(self) -> None:
        podman("rm", "--force", "--volumes", self.name, check=False, timeout=60)


def run(role: str, env: dict[str, str], network: str | None = None) -> Container:
    """The image as a Space runs it: uid 1000, 7860 published on 127.0.0.1 only, nothing
    writable but an anonymous volume at $HOME/.cache (lost with the container, as a Space
    restart loses it) and podman's tmpfs /tmp."""
    container = Container(f"demohub-check-{os.getpid()}-{role}", free_port())
    env_args = [a for k, v in env.items() for a in ("--env", f"{k}={v}")]
    net = ["--network", network] if network else []
    podman("run", "--detach", "--name", container.name, "--user", "1000:1000", "--read-only",
           "--volume", "/home/user/.cache", "--publish", f"127.0.0.1:{container.port}:7860",
           *ulimits(), *net, *env_args, IMAGE)
    return container


def answer(client, demo: str, value) -> object:
    from gradio_client import handle_file

    arg = handle_file(str(value)) if isinstance(value, Path) else value
    return client.predict(arg, api_name=f"/{demo}")


def first_calls(container: Container) -> dict[str, float]:
    """Seconds each demo's first request takes (load included), one demo after another."""
    client, out = container.client(), {}
    for demo, value in CALLS:
        started = time.monotonic()
        answer(client, demo, value)
        out[demo] = round(time.monotonic() - started, 2)
    return out


def cache_files(container: Container) -> dict[str, str]:
    """Every file of the placeholders and derived graphs under $HOME/.cache/demohub, with its
    modification time (measured.json, the last loads' figures, is rewritten by every run)."""
    out = container.exec("find", "/home/user/.cache/demohub/placeholders", "/home/user/.cache/demohub/derived",
                         "-type", "f", "-printf", "%p %T@\\n").stdout
    return dict(line.rsplit(" ", 1) for line in out.splitlines())


def events(logs: str) -> list[dict]:
    """The hub's JSON event lines."""
    return [json.loads(line) for line in logs.splitlines() if line.startswith('{"ts"')]


def load_seconds(logs: str) -> dict[str, float]:
    """Each model's load time from the hub's `load` events (the last one per model)."""
    return {e["model"]: round(e["seconds"], 2) for e in events(logs) if e.get("event") == "load"}


def save_figures() -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "figures.json").write_text(json.dumps(FIGURES, indent=2) + "\n")


@pytest.fixture(scope="module")
def image():
    if shutil.which("podman") is None:
        pytest.skip("needs podman and runc from Debian (apt-get install podman runc mmdebstrap)")
    if podman("image", "exists", IMAGE, check=False).returncode != 0:
        subprocess.run([str(PROJECT_ROOT / "scripts" / "image-check.sh"), "--build-only"], check=True,
                       env={**os.environ, "HUB_IMAGE": IMAGE}, timeout=3600)
    inspect = json.loads(podman("image", "inspect", IMAGE).stdout)[0]
    FIGURES["image"] = {"tag": IMAGE, "size_mb": round(inspect["Size"] / 1e6)}
    yield IMAGE
    save_figures()


@pytest.fixture(scope="module")
def space(image):
    container = run("space", {"HF_HUB_OFFLINE": "1"})
    try:
        FIGURES["startup_s"] = round(container.wait_ready(), 1)
        time.sleep(5)  # past startup's transient allocations
        FIGURES["memory_at_rest"] = container.memory()
        yield container
    finally:
        container.remove()


def test_the_image_runs_as_the_space_would(space):
    """uid 1000, the app owned by root, the port on loopback only, the page and the API."""
    assert space.exec("id", "-u").stdout.strip() == "1000"
    assert space.exec("stat", "-c", "%U", "/home/user/app/hub.py").stdout.strip() == "root"
    assert space.exec("touch", "/home/user/app/x").returncode != 0
    assert podman("port", space.name).stdout.split() == ["7860/tcp", "->", f"127.0.0.1:{space.port}"]
    status, kind, page = space.get("/")
    assert status == 200 and kind.startswith("text/html") and b"<gradio-app" in page
    config = json.loads(space.get("/config")[2])
    titles = {c["props"].get("label") for c in config["components"] if c["type"] == "tabitem"}
    assert {"Cassava leaf disease", "Durian breed", "Question type", "Status"} <= titles
    status, _, body = space.get("/healthz")
    assert status == 200 and json.loads(body)["demos"] == ["cassava", "durian", "questions", "search"]
    api = space.client().view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == {"/cassava", "/durian", "/questions", "/search"}
    assert not api.get("unnamed_endpoints")


def test_every_endpoint_answers_and_memory_at_rest_and_loaded(space):
    """Questions with the shipped model, the image demos with their flagged placeholders;
    the container's memory before any model (measured by the fixture) and with all four loaded."""
    assert cache_files(space) == {}  # nothing built yet: the page came first
    FIGURES["first_calls_fresh_s"] = first_calls(space)  # builds both placeholders
    client = space.client()
    coarse, fine, line, result = answer(client, "questions", "What is the capital of France?")
    assert coarse["label"] == "location (LOC)" and result["fine_label"] == "LOC:city"
    FIGURES["questions_answer"] = result["fine_label"]
    results = answer(client, "search", "a tool for cutting wood")
    assert results and {"id", "words", "pos", "gloss", "score"} <= set(results[0]), results
    for demo, value in CALLS[1:3]:
        label, heat, verdict, summary = answer(client, demo, value)
        assert summary["trained"] is False and "Untrained weights" in verdict
        assert Path(heat).stat().st_size > 1000
    time.sleep(4)  # the hub samples workers' memory every few seconds
    metrics = space.metrics()
    assert metrics["demohub_loaded_models"] == 4, metrics
    for demo, _ in CALLS:
        assert metrics[f'demohub_predictions_total{{model="{demo}"}}'] >= 2
    FIGURES["memory_loaded"] = {**space.memory(),
                                "hub_pss_mib": round(metrics["demohub_hub_memory_bytes"] / MB),
                                "workers_pss_mib": round(metrics["demohub_workers_memory_bytes"] / MB)}
    FIGURES["load_s_fresh"] = load_seconds(space.logs())
    # the hub is PID 1 here: nothing it started (workers, templates) is left unreaped
    states = space.exec("python", "-c", "import glob; print(' '.join(open(p).read().rsplit(')', 1)[1].split()[0] "
                        "for p in glob.glob('/proc/[0-9]*/stat')))").stdout.split()
    assert states and "Z" not in states, states
    cache = space.exec("du", "-sm", "/home/user/.cache/demohub/placeholders", "/home/user/.cache/demohub/derived")
    FIGURES["cache_mib"] = {Path(p).name: int(n) for n, p in (line.split() for line in cache.stdout.splitlines())}
    assert set(FIGURES["cache_mib"]) == {"placeholders", "derived"}, cache.stderr
    space.cache = cache_files(space)
    save_figures()


def test_every_example_is_served_and_answers(space):
    """Each tab's examples as the page lists them: the photos' bytes are the shipped files,
    and one sent back through the API gets an answer."""
    from demos.questions import EXAMPLES
    from demos.search import EXAMPLES as SEARCH_EXAMPLES

    config = json.loads(space.get("/config")[2])
    samples = [row[0] for c in config["components"] if c["type"] == "dataset" for row in c["props"]["samples"]]
    files = {s["orig_name"]: s["path"] for s in samples if isinstance(s, dict)}
    assert sorted(files) == sorted(p.name for p in (*CASSAVA_PHOTOS, DURIAN_PHOTO))
    assert [s for s in samples if isinstance(s, str)] == list(EXAMPLES) + list(SEARCH_EXAMPLES)  # tab order
    served = {}
    for name, path in files.items():
        status, kind, body = space.get(f"/gradio_api/file={path}")
        assert status == 200 and kind == "image/jpeg"
        shipped = next(p for p in (*CASSAVA_PHOTOS, DURIAN_PHOTO) if p.name == name)
        assert body == shipped.read_bytes(), name
        served[name] = RUN_DIR / f"served-{name}"
        served[name].write_bytes(body)
    client = space.client()
    summary = answer(client, "cassava", served["cassava_2.jpg"])[3]
    assert summary["trained"] is False and summary["architecture"] == "resnext50_32x4d"


def test_sigterm_stops_the_container_cleanly_within_10_s(space):
    killed_at, started = time.time(), time.monotonic()
    podman("kill", "--signal", "TERM", space.name)
    code = podman("wait", space.name, timeout=30).stdout.strip()
    seconds = time.monotonic() - started
    finished = float(podman("inspect", "--format",
                            '{{printf "%d.%09d" .State.FinishedAt.Unix .State.FinishedAt.Nanosecond}}',
                            space.name).stdout)
    FIGURES["sigterm_stop_s"] = {"podman_kill_to_wait": round(seconds, 2), "exit": round(finished - killed_at, 2)}
    logs = space.logs()
    assert seconds < 10, f"took {seconds:.1f} s"
    assert code == "143", f"exit code {code} (137 would be SIGKILL):\n{logs[-3000:]}"  # 128 + SIGTERM, after cleanup
    assert "Traceback" not in logs, logs[-3000:]
    ended = [e for e in events(logs) if e.get("event") == "evict" and e.get("reason") == "shutdown"]
    assert len(ended) == 4 and "demo hub: stopped" in logs, logs[-3000:]  # every worker ended by the hub
    FIGURES["sigterm_shutdown_began_s"] = round(min(e["ts"] for e in ended) - killed_at, 2)


def test_a_restart_keeping_the_cache_skips_the_placeholders_and_graphs(space):
    """What a Space restart costs its first visitors: the same container started again keeps
    $HOME/.cache (as a Space with persistent storage would); a real Space restart is the
    fresh run above, which built every placeholder and derived graph again."""
    space.started = time.monotonic()
    podman("start", space.name)
    FIGURES["startup_restart_s"] = round(space.wait_ready(), 1)
    FIGURES["first_calls_cache_kept_s"] = first_calls(space)
    FIGURES["load_s_cache_kept"] = load_seconds(space.logs().split("demo hub: 3 demos")[-1])  # this start's
    if space.cache is None:
        pytest.skip("the fresh run did not get as far as listing its cache")
    assert cache_files(space) == space.cache  # nothing rebuilt, nothing re-derived
    save_figures()


def test_a_model_pinned_on_the_hub_is_downloaded_at_start(image):
    """The Space's real configuration path: HUB_MODEL_QUESTIONS=org/repo@sha, downloaded by
    huggingface_hub from the stand-in Hub on the host (reached from the container through
    slirp4netns at 10.0.2.2, which is the host's loopback)."""
    from fakehub import FakeHub

    hub = FakeHub().start()
    sha = hub.add_folder("demohub/questions-trec", PROJECT_ROOT / "models" / "questions")
    port = hub.url.rsplit(":", 1)[1]
    container = run("hub", {"HUB_MODEL_QUESTIONS": f"demohub/questions-trec@{sha}",
                            "HF_ENDPOINT": f"http://10.0.2.2:{port}"},
                    network="slirp4netns:allow_host_loopback=true")
    try:
        container.wait_ready()
        started = time.monotonic()
        coarse, fine, line, result = answer(container.client(), "questions", "Who wrote Hamlet?")
        FIGURES["hub_first_call_s"] = round(time.monotonic() - started, 2)
        assert result["coarse_label"] == "HUM"
        logs = container.logs()
        assert '"event": "download", "model": "questions"' in logs, logs[-3000:]
        assert re.search(r'"event": "load", "model": "questions".*"origin": "hub"', logs), logs[-3000:]
        fetched = {path for (method, path), n in hub.requests.items() if method == "GET" and "/resolve/" in path}
        assert f"/demohub/questions-trec/resolve/{sha}/model.safetensors" in fetched, fetched
        listing = container.exec("ls", "/home/user/.cache/huggingface/hub").stdout
        assert "models--demohub--questions-trec" in listing
    finally:
        container.remove()
        hub.stop()
