"""Every endpoint validates its input and answers with a sentence a person can
act on (issue 10). The rules are pure functions, tested first without a model or
a server; then the same inputs go through a real hub with `gradio_client` (and
raw HTTP where the client itself refuses to send them), checking what the
client reads and what the server log says."""

from __future__ import annotations

import json
import re
import urllib.request

import gradio as gr
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from demohub.errors import InputError
from demohub.kit import images
from demohub.web.refusals import IMAGE_HINT, payload_problem
from demos.questions import text

#: What must never reach a client: exception names, pydantic text, tracebacks, server paths.
INTERNALS = re.compile(r"[A-Z][a-zA-Z]+(Error|Exception)\b|pydantic|Traceback|\[type=|"
                       r"site-packages|/work/|/tmp/|/home/|\.py\b|validation error")
INVISIBLE = "\u200b\u200b\u0301\u0007\u2060\u00ad"


def assert_readable(message: str) -> None:
    assert message and message[0].isupper() and message.rstrip().endswith((".", ")")), message
    assert not INTERNALS.search(message), message


def strip_png(path, size) -> str:
    Image.new("RGB", size, (40, 160, 40)).save(path)
    return str(path)


# ------------------------------------------------------------------ pure rules

def test_fit_aspect_pads_extreme_strips_and_leaves_photos_alone():
    wide = Image.new("RGB", (1024, 1), (200, 10, 10))
    padded = images.fit_aspect(wide)
    assert padded.size == (1024, 256)
    assert padded.getpixel((500, 128)) == (200, 10, 10)  # the strip, centred
    assert padded.getpixel((500, 0)) == (200, 10, 10)  # the mean colour of a one-colour strip
    tall = images.fit_aspect(Image.new("RGB", (3, 100)))
    assert tall.size == (25, 100)
    photo = Image.new("RGB", (640, 480))
    assert images.fit_aspect(photo) is photo
    assert images.fit_aspect(Image.new("RGB", (400, 100))).size == (400, 100)  # exactly 4:1 is kept


def test_draft_size_keeps_the_aspect_and_never_asks_below_max_side():
    assert images.draft_size((2400, 1589), 1024) == (1024, 678)
    assert images.draft_size((1589, 2400), 1024) == (678, 1024)
    assert images.draft_size((900, 598), 1024) == (900, 598)  # already small: nothing to ask
    assert images.draft_size((60000, 1), 1024) == (1024, 1)


@pytest.mark.parametrize("size,decoded", [((2400, 1589), (1200, 795)), ((1589, 2400), (795, 1200)),
                                          ((8660, 5774), (1083, 722)), ((1500, 1000), (1500, 1000))])
def test_a_large_jpeg_is_decoded_at_the_smallest_scale_that_still_covers_max_side(
        tmp_path, monkeypatch, size, decoded):
    """The decoder scales by 1/2, 1/4 or 1/8 while decoding; load_image must ask
    for the most of that which still leaves MAX_SIDE pixels to resize from.
    (PIL's own draft runs; the wrapper only records the size it decodes at.)"""
    from PIL import JpegImagePlugin

    path = tmp_path / "photo.jpg"
    Image.new("RGB", size, (40, 160, 40)).save(path, quality=80)
    decodes: list[tuple[int, int]] = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def recording_draft(self, mode, requested_size):
        result = draft(self, mode, requested_size)
        decodes.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", recording_draft)
    loaded = images.load_image(path)
    assert decodes == [decoded]
    assert max(loaded.size) == images.MAX_SIDE
    assert abs(loaded.size[0] / loaded.size[1] - size[0] / size[1]) < 0.01


@pytest.mark.parametrize("size", [(60000, 1), (1, 60000), (5000, 3)])
def test_extreme_aspect_png_decodes_to_something_the_models_can_use(tmp_path, size):
    from demos.cassava.heatmap_view import heatmap_image
    from demos.cassava.preprocess import Preprocessing, prepare

    im = images.load_image(strip_png(tmp_path / "strip.png", size))
    assert max(im.size) <= images.MAX_SIDE and max(im.size) <= images.MAX_ASPECT * min(im.size)
    prep = Preprocessing()
    assert prepare(im, prep).shape == (3, 224, 224)
    import numpy as np

    assert heatmap_image(im, np.random.default_rng(0).random((7, 7)), prep).ndim == 3


def test_a_tiny_image_is_refused_with_its_size(tmp_path):
    with pytest.raises(InputError, match=r"only 3x2 pixels; upload a photo at least 16 pixels") as info:
        images.load_image(strip_png(tmp_path / "tiny.png", (3, 2)))
    assert_readable(str(info.value))


@pytest.mark.parametrize("value,kind", [(42, "a number"), (4.5, "a number"), ([1, 2], "a list"),
                                        ({"text": "hi"}, "an object"), (True, "true/false")])
def test_a_question_must_be_text(value, kind):
    with pytest.raises(InputError, match=f"Send the question as text.*sent {kind}"):
        text.check(value)


@pytest.mark.parametrize("value", [INVISIBLE, "\u0301\u0301", "\u200d \u200c", "\x00\x01\x7f", "\ud800"])
def test_a_question_with_nothing_visible_is_refused(value):
    with pytest.raises(InputError, match="no visible text") as info:
        text.check(value)
    assert_readable(str(info.value))


def test_lone_surrogates_and_invisible_characters_are_cleaned_out():
    assert text.check("Who\ud800 wrote\u200b Hamlet?\udfff") == "Who wrote Hamlet?"
    assert text.check("Où est\u00ad la gare ?") == "Où est la gare ?"
    assert text.check("What does 🙂 mean?") == "What does 🙂 mean?"
    text.check("a\ud83d b").encode("utf-8")  # encodable: the tokenizer can take it


def test_question_length_limit_and_truncation_notice_below_it():
    with pytest.raises(InputError, match=r"2,001 characters long; the limit is 2,000") as info:
        text.check("x" * 2001)
    assert_readable(str(info.value))
    with pytest.raises(InputError, match="limit is 2,000"):
        text.prepare("why " * 1_250_000, 64)  # 5 MB
    moderate = text.prepare("Who " + "really " * 250 + "won?", 64)  # 1,758 characters: read in part
    assert moderate.clipped and len(moderate.text) <= 64 * text.CHARS_PER_TOKEN
    assert not text.prepare("Who won?", 64).clipped


def test_payload_types_are_checked_against_the_component():
    box = gr.Textbox(label="Question", placeholder="What is the capital of France?")
    assert payload_problem(box, "Who?") is None and payload_problem(box, None) is None
    message = payload_problem(box, 42, "questions")
    assert message.startswith("Send the question as text, e.g. client.predict(\"What is the capital")
    assert "sent a number" in message and 'api_name="/questions"' in message
    assert "sent a list" in payload_problem(box, ["a"], "questions")
    photo = gr.Image(type="filepath")
    for bad in ("hello", 42, [1]):
        assert payload_problem(photo, bad) == IMAGE_HINT
    assert payload_problem(photo, {"path": "x", "meta": {"_type": "gradio.FileData"}}) is None
    anything = gr.JSON()  # its schema's type is {} (any JSON): accepted as it is, never a crash
    assert payload_problem(anything, {"results": [1]}) is None and payload_problem(anything, [1, 2]) is None
    assert "true or false" in payload_problem(gr.Checkbox(label="Flag"), "yes")
    assert payload_problem(gr.Number(label="N"), True) is not None  # a bool is not a number here
    assert_readable(message)


# ------------------------------------------------------------ through a real hub

@pytest.fixture(scope="module")
def client(demo_hub):
    return demo_hub.client()


class LogWatch:
    """The hub log written since `mark()`."""

    def __init__(self, hub):
        self.hub = hub
        self.start = 0

    def mark(self) -> None:
        self.start = len(self.hub.logs())

    def since(self) -> str:
        return self.hub.logs()[self.start:]


def refusal_message(client, value, api_name) -> str:
    with pytest.raises(AppError) as info:
        client.predict(value, api_name=api_name)
    return str(info.value)


def raw_call(hub, api_name: str, body: bytes) -> tuple[str, dict | list]:
    """POST a JSON body gradio_client would not send (e.g. a lone surrogate,
    escaped as JSON allows), then read the result stream: (event, data)."""
    request = urllib.request.Request(f"{hub.url}gradio_api/call/{api_name}", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        event_id = json.loads(resp.read())["event_id"]
    with urllib.request.urlopen(f"{hub.url}gradio_api/call/{api_name}/{event_id}", timeout=120) as resp:
        stream = resp.read().decode()
    event = re.findall(r"^event: (\w+)", stream, re.M)[-1]
    data = re.findall(r"^data: (.*)$", stream, re.M)[-1]
    return event, json.loads(data)


def test_questions_refuses_what_is_not_a_question_in_one_log_line_each(demo_hub, client):
    log = LogWatch(demo_hub)
    log.mark()
    cases = [(42, "Send the question as text"), ([1, 2], "Send the question as text"),
             ({"text": "Who?"}, "Send the question as text"), (INVISIBLE, "no visible text"),
             ("x" * 100_000, "limit is 2,000")]
    for value, expected in cases:
        message = refusal_message(client, value, "/questions")
        assert expected in message
        assert_readable(message)
    logged = log.since()
    assert logged.count('"event": "input_error"') == len(cases)
    assert "Traceback" not in logged


def test_a_lone_surrogate_is_cleaned_and_answered(demo_hub):
    event, data = raw_call(demo_hub, "questions", b'{"data": ["Who wrote \\ud800Hamlet?"]}')
    assert event == "complete", data
    assert data[3]["coarse_label"] == "HUM"
    event, data = raw_call(demo_hub, "questions", b'{"data": ["\\udc00\\u200b"]}')
    assert event == "error" and "no visible text" in data["error"]


def test_moderately_long_question_is_read_in_part_with_a_notice(client):
    _, _, summary, result = client.predict("Who " + "really " * 250 + "won?", api_name="/questions")
    assert result["truncated"] and "only the beginning" in summary


@pytest.mark.parametrize("demo", ["cassava", "durian"])
def test_image_endpoints_refuse_wrong_types_with_a_sentence(demo_hub, client, demo):
    log = LogWatch(demo_hub)
    log.mark()
    cases = [("hello", "handle_file('photo.jpg')"), (42, "handle_file('photo.jpg')"),
             ([1], "handle_file('photo.jpg')"),
             ({"path": 5, "meta": {"_type": "gradio.FileData"}}, "handle_file('photo.jpg')")]
    for value, expected in cases:
        message = refusal_message(client, value, f"/{demo}")
        assert expected in message
        assert_readable(message)
    # gradio_client would upload a local file named like this; raw JSON names a server path.
    event, data = raw_call(demo_hub, demo, json.dumps(
        {"data": [{"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}}]}).encode())
    assert event == "error" and "Paths on the server are not accepted" in data["error"]
    assert_readable(data["error"])
    logged = log.since()
    assert logged.count('"event": "input_error"') == len(cases) + 1
    assert "Traceback" not in logged


def test_a_60000x1_png_is_answered(client, tmp_path):
    strip = strip_png(tmp_path / "strip.png", (60000, 1))
    _, heatmap, _, summary = client.predict(handle_file(strip), api_name="/cassava")
    assert abs(sum(summary["probabilities"].values()) - 1) < 1e-3
    with Image.open(heatmap) as im:
        assert min(im.size) > 1


def test_a_real_fault_keeps_its_traceback_in_the_log_and_its_text_from_the_client(tmp_path):
    """A bug in a tab is not an input error: the log gets the full traceback,
    the client gets no exception name, text or path."""
    from support import running_hub

    demo = tmp_path / "faultydemos" / "faulty"
    demo.mkdir(parents=True)
    (demo / "__init__.py").write_text(
        "from demohub.spec import DemoSpec\n"
        "SPEC = DemoSpec(name='faulty', title='Faulty', description='', "
        "runtime='faultydemos.faulty.runtime', tab='faultydemos.faulty.tab')\n")
    (demo / "tab.py").write_text(
        "import gradio as gr\n"
        "def build(ctx):\n"
        "    box = gr.Textbox(label='Anything')\n"
        "    def run(value):\n"
        "        raise KeyError(f'secret detail in {__file__}')\n"
        "    gr.Button().click(run, box, gr.Textbox(), api_name=ctx.api_name)\n")
    with running_hub("--demos-dir", str(demo.parent)) as hub:
        message = refusal_message(hub.client(), "hello", "/faulty")
        logs = hub.logs()
    assert "secret" not in message and "KeyError" not in message and ".py" not in message
    assert "Traceback" in logs and "KeyError: 'secret detail in" in logs
    assert '"event": "input_error"' not in logs


def test_a_request_body_of_the_wrong_shape_gets_a_sentence_not_pydantic_text(demo_hub):
    import httpx

    with httpx.Client(base_url=demo_hub.url, timeout=30) as http:
        for path, body in [("gradio_api/call/questions", {"data": "Who?"}),
                           ("gradio_api/call/questions", {"question": "Who?"}),
                           ("gradio_api/queue/join", {"data": "Who?", "fn_index": 0, "session_hash": "x"})]:
            response = http.post(path, json=body)
            assert response.status_code == 422, response.text
            message = response.json()["error"]
            assert message.startswith('"data" must be a list') and "loc" not in response.text
            assert not INTERNALS.search(message), message
