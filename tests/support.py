"""Shared test helpers: start a real hub process, talk to it, inspect it."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TEST_DEMOS = FIXTURES / "testdemos"
#: The sample photos the image demos ship (demos/<name>/examples/, attribution beside them).
CASSAVA_PHOTOS = sorted((PROJECT_ROOT / "demos" / "cassava" / "examples").glob("cassava_*.jpg"))
DURIAN_PHOTO = PROJECT_ROOT / "demos" / "durian" / "examples" / "durian_1.jpg"

#: Hub logs and model caches of this test process; removed when it exits (no temp folder left behind).
RUN_DIR = Path(tempfile.mkdtemp(prefix="hub-tests-"))
atexit.register(shutil.rmtree, RUN_DIR, ignore_errors=True)
#: gradio_client (2.7) passes every file it downloads through a new folder in the system
#: temp dir and never removes it: this process's temp dir is in RUN_DIR, and so are its downloads.
tempfile.tempdir = str(RUN_DIR / "tmp")
os.makedirs(tempfile.tempdir)
CLIENT_DOWNLOADS = RUN_DIR / "downloads"

#: Shared libraries that must never be mapped into the hub process.
FRAMEWORK_LIBS = ("libtorch", "_pywrap_tensorflow", "libtensorflow", "tokenizers.abi3", "tokenizers.cpython",
                  "_swigfaiss", "libfaiss")


def hub_cache(name: str = "test-hub") -> Path:
    """A --cache-dir kept across runs (placeholder models are built once), one per
    pytest-xdist worker: two hubs never build the same placeholder at once."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return PROJECT_ROOT / ".cache" / (f"{name}-{worker}" if worker else name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_zombie(pid: int) -> bool:
    """Process `pid` has ended but its parent has not reaped it yet."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def gone(pid: int) -> bool:
    """Process `pid` has ended: reaped, or a zombie waiting for its parent."""
    import psutil

    return not psutil.pid_exists(pid) or is_zombie(pid)


def files_under(folder: Path) -> list[Path]:
    """The files under folder now; a folder the hub's sweeper removes while this walks
    is skipped (os.walk ignores it) instead of failing the listing (rglob raises)."""
    return [Path(top) / name for top, _, names in os.walk(folder) for name in names]


def ages(files: list[Path], now: float) -> list[float]:
    """Seconds since each file's ctime; a file swept between listing and stat has none."""
    found = []
    for f in files:
        try:
            found.append(now - f.stat().st_ctime)
        except FileNotFoundError:
            pass
    return found


def mapped_framework_libs(pid: int) -> set[str]:
    """Framework shared objects mapped into process `pid` (read from /proc)."""
    found = set()
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            path = line.rsplit(" ", 1)[-1].strip()
            name = os.path.basename(path)
            if any(lib in name for lib in FRAMEWORK_LIBS):
                found.add(name)
    return found


class HubServer:
    """A `python hub.py` subprocess bound to 127.0.0.1 on a free port."""

    def __init__(self, proc: subprocess.Popen, port: int, log_path: Path):
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}/"
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, timeout: float = 10) -> tuple[int, str]:
        with urllib.request.urlopen(self.url.rstrip("/") + path, timeout=timeout) as resp:
            return resp.status, resp.read().decode()

    def client(self):
        from gradio_client import Client

        return Client(self.url, verbose=False, download_files=CLIENT_DOWNLOADS)

    def worker_pids(self) -> list[int]:
        """The hub's model workers: its children, less the framework templates
        (`--start-method template`) that fork them."""
        import psutil

        out = []
        for child in psutil.Process(self.pid).children(recursive=False):
            try:
                if not child.name().startswith("template:"):
                    out.append(child.pid)
            except psutil.NoSuchProcess:
                pass
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_hub(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
              cache_dir: Path | None = None, root: Path = PROJECT_ROOT) -> HubServer:
    """Start `root`/hub.py (this checkout's by default) with `args` and wait until /healthz answers."""
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="hub-", suffix=".log", dir=RUN_DIR)[1])
    cache_dir = cache_dir or Path(tempfile.mkdtemp(prefix="hub-cache-", dir=RUN_DIR))
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    full_env.setdefault("PYTHONUNBUFFERED", "1")  # a hub that hangs has still said how far it got
    cmd = [sys.executable, str(root / "hub.py"), "--host", "127.0.0.1", "--port", str(port),
           "--cache-dir", str(cache_dir), *args]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    server = HubServer(proc, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hub exited with {proc.returncode}:\n{server.logs()}")
        try:
            if server.get("/healthz", timeout=2)[0] == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"hub did not answer /healthz within {timeout} s:\n{server.logs()}")


def run_hub(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `hub.py` on the test demos to its end (for settings it must refuse),
    with no HUB_* variable from this environment."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    full.update(env or {})
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "hub.py"), "--demos-dir", str(TEST_DEMOS), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT, env=full)


@contextmanager
def running_hub(*args: str, **kwargs):
    server = start_hub(*args, **kwargs)
    try:
        yield server
    finally:
        server.stop()
