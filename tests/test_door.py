"""The hub process as an attacker meets it: one door in (the bounded queue),
size limits at the HTTP level, no user payload decoded or kept in the hub, and
a temp folder that stays bounded and is empty after shutdown.

A real hub runs two fixture demos written here: `snap` (a photo in, a JSON
verdict and a heatmap image out, like cassava) and `note` (text in, with a
private queued event like the questions tab's Enter key)."""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from support import ages, files_under, running_hub

MB = 2**20
TECHNICAL = ("Traceback", "Exception", "Error:", "pydantic", "/tmp/", "/work/", "site-packages")

SNAP_RUNTIME = '''
import json
import numpy as np
from demohub.kit.images import load_image

def placeholder(model_dir):
    (model_dir / "config.json").write_text(json.dumps({"trained": False}))

def load(model_dir):
    return {}

def predict(model, request):
    if "image" in request:
        im = load_image(request["image"])
        return {"size": list(im.size), "heat": np.asarray(im.resize((48, 48)))}
    return {"length": len(request.get("text", ""))}
'''

SNAP_TAB = '''
import gradio as gr
from demohub.kit.photo import PhotoUpload

def build(ctx):
    photo = PhotoUpload(label="photo")
    button = gr.Button("Look")
    info = gr.JSON()
    heat = gr.Image(type="numpy", format="jpeg", interactive=False)

    def look(path, progress=gr.Progress()):
        if not path:
            raise ctx.input_error("Upload a photo first")
        result = ctx.predict({"image": path}, progress)
        return {"size": result["size"]}, result["heat"]

    button.click(look, photo, [info, heat], api_name=ctx.api_name, concurrency_limit=ctx.concurrency_limit)
'''

NOTE_TAB = '''
import gradio as gr

def build(ctx):
    box = gr.Textbox(label="text")
    button = gr.Button("Count")
    out = gr.JSON()

    def count(text, progress=gr.Progress()):
        return ctx.predict({"text": text or ""}, progress)

    button.click(count, box, out, api_name=ctx.api_name, concurrency_limit=ctx.concurrency_limit)
    box.submit(count, box, out, api_visibility="private", concurrency_limit=ctx.concurrency_limit)
'''


@pytest.fixture(scope="module")
def demos_dir(tmp_path_factory) -> Path:
    demos = tmp_path_factory.mktemp("door") / "doordemos"
    for name, tab in (("snap", SNAP_TAB), ("note", NOTE_TAB)):
        (demos / name).mkdir(parents=True)
        (demos / name / "__init__.py").write_text(
            "from demohub.spec import DemoSpec\n"
            f"SPEC = DemoSpec(name='{name}', title='{name.title()}', description='A test demo.', "
            f"runtime='doordemos.{name}.runtime', tab='doordemos.{name}.tab', baseline_concurrency=4, "
            "predict_timeout_s=60.0, load_timeout_s=60.0)\n")
        (demos / name / "runtime.py").write_text(SNAP_RUNTIME)
        (demos / name / "tab.py").write_text(tab)
    return demos


@pytest.fixture(scope="module")
def hub(demos_dir, tmp_path_factory):
    temp = tmp_path_factory.mktemp("gradio-temp")
    with running_hub("--demos-dir", str(demos_dir), env={"GRADIO_TEMP_DIR": str(temp)}) as server:
        yield server


# --- helpers: the raw HTTP an attacker (or the browser) would send ---------------------------

def png_bytes(width: int, height: int, grey: int = 128) -> bytes:
    """A flat grey RGB PNG, built row by row so a huge one costs the test no memory."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = b"\x00" + bytes([grey]) * (3 * width)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def dependencies(hub) -> list[dict]:
    return json.loads(hub.get("/config")[1])["dependencies"]


def fn_index(hub, api_name: str) -> int:
    return next(d["id"] for d in dependencies(hub) if d.get("api_name") == api_name)


def private_fn(hub, queued: bool) -> int:
    """A private event with a Python handler; the un-queued one is the page's status refresh
    on load (no inputs)."""
    return next(d["id"] for d in dependencies(hub)
                if d.get("api_visibility") == "private" and bool(d.get("queue", True)) == queued
                and d.get("backend_fn")
                and (queued or (not d.get("inputs") and any(t[1] == "load" for t in d["targets"]))))


def join(http: httpx.Client, hub, fn: int, data: list, session: str | None = None) -> dict:
    """One event through /queue/join and its SSE stream: the completion message, or
    {"status": code, "text": body} when the join itself is refused."""
    session = session or uuid.uuid4().hex
    body = {"data": data, "fn_index": fn, "session_hash": session, "event_data": None, "trigger_id": None}
    answer = http.post(hub.url + "gradio_api/queue/join", json=body)
    if answer.status_code != 200:
        return {"status": answer.status_code, "text": answer.text}
    event_id = answer.json()["event_id"]
    with http.stream("GET", hub.url + "gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed" and message.get("event_id") == event_id:
                    return message
    raise AssertionError(f"the stream for {event_id} ended without a completion")


def rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def peak_rss(pid: int) -> int:
    """VmHWM: the most the process ever held resident (a spike freed later still counts)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def reset_peak(pid: int) -> None:
    """Reset VmHWM to the current RSS (writing 5 to clear_refs, Linux >= 4.0)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def assert_readable(text: str) -> None:
    for word in TECHNICAL:
        assert word not in text, f"{word!r} reached the client: {text[:300]}"


# --- 1. images are never decoded in the hub process ------------------------------------------

def test_a_data_url_image_is_refused_without_decoding_it_in_the_hub(hub, tmp_path):
    """A 12000x12000 PNG is ~0.4 MB as a file and ~430 MB decoded: Gradio's own
    gr.Image.preprocess decodes a data: URL with PIL in the hub process."""
    fn = fn_index(hub, "snap")
    big = png_bytes(12000, 12000)
    assert len(big) < 1 * MB
    url = "data:image/png;base64," + base64.b64encode(big).decode()
    warm = tmp_path / "warm.png"
    warm.write_bytes(png_bytes(64, 64))
    assert hub.client().predict(handle_file(str(warm)), api_name="/snap")[0] == {"size": [64, 64]}
    with httpx.Client(timeout=180) as http:
        reset_peak(hub.pid)
        before = rss(hub.pid)
        outcomes = [join(http, hub, fn, [{"url": url, "meta": {"_type": "gradio.FileData"}}]) for _ in range(3)]
        grew = peak_rss(hub.pid) - before
    print(f"{len(outcomes)} data: URL images of 12000x12000: hub peak RSS +{grew / MB:.0f} MB")
    assert grew < 60 * MB, f"the hub's peak RSS grew by {grew / MB:.0f} MB on data: URL images"
    for outcome in outcomes:
        assert outcome.get("success") is False, outcome
        message = outcome.get("output", {}).get("error") or outcome.get("text", "")
        assert "handle_file" in message and "file upload" in message, message
        assert_readable(message)


def test_a_file_given_as_a_web_address_is_refused_before_gradio_fetches_it(hub):
    """Gradio downloads a FileData whose path is a URL in the hub process, whole, before
    any input check: the hub would fetch (and hold) whatever a caller points it at."""
    fn = fn_index(hub, "snap")
    remote = {"path": "https://example.com/leaf.jpg", "meta": {"_type": "gradio.FileData"}}
    with httpx.Client(timeout=60) as http:
        for path, body in (("gradio_api/queue/join", {"data": [remote], "fn_index": fn, "session_hash": "r1"}),
                           ("gradio_api/call/snap", {"data": [remote]})):
            answer = http.post(hub.url + path, json=body)
            assert answer.status_code == 400, answer.text
            assert "handle_file" in answer.json()["error"] and "web address" in answer.json()["error"]
            assert_readable(answer.text)


# --- 2. size limits at the HTTP level --------------------------------------------------------

def test_uploads_and_request_bodies_over_the_limits_get_413_with_a_sentence(demos_dir, tmp_path):
    env = {"GRADIO_TEMP_DIR": str(tmp_path / "temp"), "HUB_MAX_FILE_SIZE": "1M", "HUB_MAX_BODY": "64K"}
    with running_hub("--demos-dir", str(demos_dir), env=env) as hub, httpx.Client(timeout=60) as http:
        upload = hub.url + "gradio_api/upload"
        small = http.post(upload, files={"files": ("ok.png", png_bytes(64, 64), "image/png")})
        assert small.status_code == 200, small.text
        big = http.post(upload, files={"files": ("big.png", b"\x89PNG" + b"\0" * (2 * MB), "image/png")})
        assert big.status_code == 413, big.text
        assert "1 MB" in big.text
        assert_readable(big.text)
        edge = http.post(upload, files={"files": ("edge.png", b"\0" * (MB + 10 * 1024), "image/png")})
        assert edge.status_code == 413 and "1 MB" in edge.json()["error"], edge.text  # Gradio's own check
        many = http.post(upload, files=[("files", (f"{i}.png", b"\0" * (600 * 1024), "image/png")) for i in range(4)])
        assert many.status_code == 413, many.text  # the limit holds per request, not only per file

        fn = fn_index(hub, "note")
        body = {"data": ["x" * (100 * 1024)], "fn_index": fn, "session_hash": "s1"}
        large = http.post(hub.url + "gradio_api/queue/join", json=body)
        assert large.status_code == 413, large.text
        assert "64 KB" in large.json()["error"]
        assert_readable(large.text)

        def chunks():
            for _ in range(100):
                yield b"x" * 1024
        streamed = http.post(hub.url + "gradio_api/queue/join", content=chunks(),
                             headers={"content-type": "application/json"})
        assert streamed.status_code == 413, streamed.text  # no Content-Length: counted as it arrives

        assert join(http, hub, fn, ["a short note"])["output"]["data"][0] == {"length": 12}
        assert hub.proc.poll() is None


# --- 3. per-session state keeps no inputs ----------------------------------------------------

SESSIONS = 200


def test_two_hundred_sessions_with_the_largest_input_leave_the_hub_rss_flat(hub):
    """200 sessions x 1 MB: kept per session, that would be 200 MB, four times the limit."""
    fn = fn_index(hub, "note")
    text = "q" * (1 * MB - 4096)  # the largest question the default --max-body accepts

    def session(_):
        with httpx.Client(timeout=120) as http:
            return join(http, hub, fn, [text])

    with ThreadPoolExecutor(4) as pool:
        warm = list(pool.map(session, range(24)))
        assert all(m.get("success") for m in warm), warm[:2]
        time.sleep(1)
        before = rss(hub.pid)
        started = time.monotonic()
        results = list(pool.map(session, range(SESSIONS)))
        seconds = time.monotonic() - started
    time.sleep(2)
    after = rss(hub.pid)
    assert sum(1 for m in results if m.get("success")) == SESSIONS
    assert results[0]["output"]["data"][0] == {"length": len(text)}
    print(f"{SESSIONS} sessions x {len(text) / MB:.2f} MB in {seconds:.0f} s: "
          f"hub RSS {before / MB:.0f} -> {after / MB:.0f} MB")
    assert after - before < 50 * MB, f"hub RSS grew {(after - before) / MB:.0f} MB over {SESSIONS} sessions"


# --- 4. one door in --------------------------------------------------------------------------

def test_direct_routes_that_skip_the_queue_are_refused(hub):
    snap, note = fn_index(hub, "snap"), fn_index(hub, "note")
    targets = [
        ("gradio_api/run/note", {"data": ["hi"]}),
        ("gradio_api/api/note", {"data": ["hi"]}),
        ("gradio_api/run/predict", {"data": ["hi"], "fn_index": note}),
        ("gradio_api/run/predict", {"data": [None], "fn_index": snap}),
    ]

    def call(i):
        path, body = targets[i % len(targets)]
        with httpx.Client(timeout=60) as http:
            answer = http.post(hub.url + path, json=body)
            return answer.status_code, answer.text

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(call, range(200)))
    codes = {code for code, _ in answers}
    assert codes == {404}, codes
    for _, text in answers[:4]:
        assert "queue" in json.loads(text)["error"] and "gradio_client" in json.loads(text)["error"]
        assert_readable(text)


def test_private_events_are_not_callable_from_outside(hub):
    queued_private = private_fn(hub, queued=True)
    status_refresh = private_fn(hub, queued=False)
    private_name = next(d["api_name"] for d in dependencies(hub) if d["id"] == queued_private)
    with httpx.Client(timeout=60) as http:
        direct = http.post(hub.url + "gradio_api/run/predict",
                           json={"data": ["hi"], "fn_index": queued_private, "session_hash": "p1"})
        assert direct.status_code == 404, direct.text
        by_name = http.post(hub.url + f"gradio_api/call/{private_name}", json={"data": ["hi"]})
        assert by_name.status_code == 404, by_name.text
        assert_readable(by_name.text)
        # The status refresh is the page's own un-queued event: the page calls it directly,
        # never through the queue.
        queued = http.post(hub.url + "gradio_api/queue/join",
                           json={"data": [], "fn_index": status_refresh, "session_hash": "p2"})
        assert queued.status_code == 404, queued.text
        page = http.post(hub.url + "gradio_api/run/predict",
                         json={"data": [], "fn_index": status_refresh, "session_hash": "p3"})
        assert page.status_code == 200, page.text


def test_unknown_endpoints_answer_404_with_a_sentence(hub):
    with httpx.Client(timeout=30) as http:
        for path, body in (("gradio_api/run/nope", {"data": []}), ("gradio_api/call/nope", {"data": []}),
                           ("gradio_api/queue/join", {"data": [], "fn_index": 9999, "session_hash": "u"}),
                           ("gradio_api/queue/join", {"data": [], "fn_index": "x", "session_hash": "u"}),
                           ("gradio_api/queue/join", [1, 2])):
            answer = http.post(hub.url + path, json=body)
            assert answer.status_code in (400, 404), (path, answer.status_code, answer.text)
            assert answer.json()["error"].endswith("."), answer.text
            assert_readable(answer.text)
        bad_json = http.post(hub.url + "gradio_api/queue/join", content=b"{not json",
                             headers={"content-type": "application/json"})
        assert bad_json.status_code == 400 and "JSON" in bad_json.json()["error"]


def test_api_docs_routes_are_off_unless_asked_for(hub, demos_dir):
    docs = ("/docs", "/redoc", "/openapi.json", "/gradio_api/openapi.json", "/gradio_api/runs",
            "/monitoring", "/gradio_api/process_recording", "/gradio_api/vibe-code")
    with httpx.Client(timeout=30) as http:
        for path in docs:
            assert http.get(hub.url.rstrip("/") + path).status_code == 404, path
    with running_hub("--demos-dir", str(demos_dir), "--api-docs") as open_hub, httpx.Client(timeout=30) as http:
        for path in ("/docs", "/openapi.json", "/gradio_api/openapi.json"):
            assert http.get(open_hub.url.rstrip("/") + path).status_code == 200, path


def test_gradio_client_uploads_a_photo_and_gets_the_heatmap(hub, tmp_path):
    photo = tmp_path / "p.png"
    photo.write_bytes(png_bytes(300, 200))
    info, heatmap = hub.client().predict(handle_file(str(photo)), api_name="/snap")
    assert info == {"size": [300, 200]}
    assert Path(heatmap).is_file()
    with pytest.raises(AppError, match="handle_file"):
        hub.client().predict({"url": "data:image/png;base64,AAAA", "meta": {"_type": "gradio.FileData"}},
                             api_name="/snap")


# --- 5. temp files ---------------------------------------------------------------------------

def test_the_temp_folder_stays_bounded_and_is_empty_after_shutdown(demos_dir, tmp_path):
    """Uploads and heatmaps live at most --temp-ttl plus one sweep period; nothing
    is left once the hub has exited (SIGTERM, as a supervisor stops it)."""
    temp = tmp_path / "gradio-temp"
    temp.mkdir()
    photos = []
    for i in range(14):
        photos.append(tmp_path / f"photo{i}.png")
        photos[-1].write_bytes(png_bytes(200 + i, 120, grey=10 * i))  # distinct uploads and heatmaps
    ttl = 2
    env = {"GRADIO_TEMP_DIR": str(temp), "HUB_TEMP_TTL": str(ttl)}
    counts, oldest = [], 0.0
    with running_hub("--demos-dir", str(demos_dir), env=env) as hub:
        client = hub.client()
        started = time.monotonic()
        for i, photo in enumerate(photos):
            info, _ = client.predict(handle_file(str(photo)), api_name="/snap")
            assert info == {"size": [200 + i, 120]}
            files = files_under(temp)
            counts.append(len(files))
            now = time.time()
            oldest = max([oldest, *ages(files, now)])
            time.sleep(0.5)
        seconds = time.monotonic() - started
        idle = time.monotonic()
        settled = files_under(temp)
        while settled and time.monotonic() - idle < ttl * 2 + 1:  # age limit + one sweep period + slack
            time.sleep(0.25)
            settled = files_under(temp)
        idle = time.monotonic() - idle
        assert hub.get("/healthz")[0] == 200
    print(f"{len(photos)} uploads in {seconds:.0f} s: files in the temp folder {min(counts)}-{max(counts)}, "
          f"oldest {oldest:.1f} s; {len(settled)} after {idle:.1f} s idle")
    assert seconds > 3 * ttl  # long enough for an unbounded folder to show it
    assert oldest <= ttl + ttl / 2 + 2, oldest  # age limit + one sweep period + slack
    assert settled == [], settled
    assert list(temp.iterdir()) == [], list(temp.rglob("*"))[:10]
