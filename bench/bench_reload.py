"""The author's loop (issue 28): from saving a file to the hub answering with it.

    .venv/bin/python bench/bench_reload.py                      # 5 edits per demo, ~3 min on 2 cores
    .venv/bin/python bench/bench_reload.py --edits 3 --json /tmp/reload.json

One real hub (`hub.py --reload`, worker templates, 127.0.0.1, ended by PID) over a
temporary copy of demos/ (questions, cassava, durian; the real model folders and
the placeholders' cache). Python writes bytecode as on an author's machine.

- runtime edit: each time a new block is appended to the demo's runtime.py that
  tags every answer with the edit's number; the time is from the write to the
  first answer carrying that number (requests sent back to back from the write
  on: the first usually still reaches the old worker, so up to two calls' time is
  included); and from the write to the new worker's `load` event (ready);
- page edit: a tab's label changed; the time to the served config having it;
- baseline: what an author does without --reload: stop the hub and start it
  again, timed from the stop to that demo's first answer.

Figures go to docs/benchmarks.md ("The author's loop").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import free_port, log, log_events  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMOS = ("questions", "cassava", "durian")
TARGET_S = {"questions": 1.5, "cassava": 1.5, "durian": 3.0}
MARK = "# --- bench_reload edit ---"
EDIT = MARK + '''
_before_edit = predict


def _tag(result):
    if isinstance(result, list):
        return [_tag(r) for r in result]
    if isinstance(result, dict):
        return {{**result, "edit": {k}}}
    result.extra["edit"] = {k}
    return result


def predict(model, request):
    return _tag(_before_edit(model, request))


if "predict_batch" in globals():
    _before_batch = predict_batch

    def predict_batch(model, requests):
        return _tag(_before_batch(model, requests))
'''


class Hub:
    def __init__(self, demos_dir: Path, cache: Path, reload: bool, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "", "GRADIO_ANALYTICS_ENABLED": "False",
               "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, str(ROOT / "hub.py"), "--host", "127.0.0.1", "--port", str(self.port),
               "--demos-dir", str(demos_dir), "--cache-dir", str(cache), "--only", ",".join(DEMOS),
               "--max-models", "3", "--start-method", "template", *(["--reload"] if reload else [])]
        self.log_path = log_path
        self.started = time.monotonic()
        with open(log_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.http = httpx.Client(base_url=self.url, timeout=120)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited:\n{log_path.read_text()[-3000:]}")
            try:
                if self.http.get("/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("hub did not answer /healthz")

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def ask(hub: Hub, demo: str) -> dict:
    """One request through Gradio's queue (/call), as gradio_client sends it; the JSON output."""
    if demo == "questions":
        data = ["What is the capital of Peru?"]
    else:
        photo = ROOT / "demos" / demo / "examples" / f"{demo}_1.jpg"
        upload = hub.http.post("/gradio_api/upload", files={"files": (photo.name, photo.read_bytes(), "image/jpeg")})
        upload.raise_for_status()
        data = [{"path": upload.json()[0], "meta": {"_type": "gradio.FileData"}, "orig_name": photo.name}]
    started = hub.http.post(f"/gradio_api/call/{demo}", json={"data": data})
    started.raise_for_status()
    event_id = started.json()["event_id"]
    with hub.http.stream("GET", f"/gradio_api/call/{demo}/{event_id}") as stream:
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind in ("complete", "error"):
                if kind == "error":
                    raise RuntimeError(f"{demo}: {line[6:]}")
                return json.loads(line[6:])[-1]
    raise RuntimeError(f"{demo}: no answer")


def runtime_edit(hub: Hub, demos_dir: Path, demo: str, k: int, saves: list[float]) -> float:
    runtime = demos_dir / demo / "runtime.py"
    text = runtime.read_text().split(MARK)[0].rstrip() + "\n\n\n" + EDIT.format(k=k)
    saved = time.monotonic()
    saves.append(time.time())
    runtime.write_text(text)
    deadline = saved + 60
    while time.monotonic() < deadline:
        try:
            if ask(hub, demo).get("edit") == k:
                return time.monotonic() - saved
        except RuntimeError:  # e.g. the reload raced a request: the next one tells
            pass
    raise RuntimeError(f"{demo}: edit {k} never answered")


def page_edit(hub: Hub, demos_dir: Path, k: int) -> float:
    tab = demos_dir / "questions" / "tab.py"
    original = tab.read_text()
    assert 'label="Question"' in original, "the questions tab's label changed: update the bench"
    saved = time.monotonic()
    tab.write_text(original.replace('label="Question"', f'label="Question (edit {k})"'))
    try:
        while time.monotonic() < saved + 30:
            if f"Question (edit {k})" in hub.http.get("/config").text:
                return time.monotonic() - saved
            time.sleep(0.02)
        raise RuntimeError("the page edit never showed")
    finally:
        tab.write_text(original)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edits", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-reload-"))
    cache = ROOT / ".cache" / "bench-reload"  # the placeholders, kept between runs
    results: dict = {"edits": args.edits, "runtime_s": {}, "restart_s": {}, "page_s": []}
    try:
        demos_dir = work / "demos"
        shutil.copytree(ROOT / "demos", demos_dir, ignore=shutil.ignore_patterns("__pycache__"))
        hub = Hub(demos_dir, cache, reload=True, log_path=work / "hub.log")
        try:
            for demo in DEMOS:
                log(f"warming {demo}")
                ask(hub, demo)
            saves: dict[str, list[float]] = {}
            for demo in DEMOS:
                saves[demo] = []
                times = [runtime_edit(hub, demos_dir, demo, k, saves[demo]) for k in range(1, args.edits + 1)]
                results["runtime_s"][demo] = times
                log(f"{demo}: save -> new answer {spread(times)} (target {TARGET_S[demo]} s)")
            results["page_s"] = [page_edit(hub, demos_dir, k) for k in range(1, args.edits + 1)]
            log(f"questions tab: save -> served page {spread(results['page_s'])} (target 2 s)")
            events = log_events(hub.log_path)
            results["reload_events"] = len([e for e in events if e["event"] == "reload"])
            for demo in DEMOS:  # the worker's own load of the saved code (its first load warmed it)
                loads = [e for e in events if e["event"] == "load" and e.get("model") == demo]
                results.setdefault("reload_load_s", {})[demo] = [e["seconds"] for e in loads[1:]]
                ready = [next(e["ts"] for e in loads if e["ts"] > at) - at for at in saves[demo]]
                results.setdefault("save_to_ready_s", {})[demo] = ready
                log(f"{demo}: save -> new worker ready {spread(ready)}, of which its load "
                    f"{spread(results['reload_load_s'][demo])}")
        finally:
            hub.stop()
        for demo in DEMOS:  # the baseline: restart the whole hub, time to this demo's first answer
            started = time.monotonic()
            hub = Hub(demos_dir, cache, reload=False, log_path=work / f"restart-{demo}.log")
            try:
                ask(hub, demo)
                results["restart_s"][demo] = time.monotonic() - started
            finally:
                hub.stop()
            log(f"{demo}: restart -> first answer {results['restart_s'][demo]:.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
