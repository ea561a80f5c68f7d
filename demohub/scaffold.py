"""`python -m demohub new NAME --kind image|text`: a working demo folder to start from.

It writes demos/NAME/ (the SPEC, a runtime whose tiny numpy model is built at
placeholder time, so the tab answers before any training, and a tab) and
tests/test_demo_NAME.py (the contract checks, the runtime end to end, and a real
hub answering through gradio_client). The folder is written beside the demos
and moved in whole, so a running `make dev` hub picks it up as one new tab.
"""

from __future__ import annotations

import argparse
import keyword
import re
import shutil
import sys
from pathlib import Path

from demohub import PROJECT_ROOT

KINDS = ("image", "text")

SPEC = '''"""{title}: {what}."""

from demohub.spec import DemoSpec

SPEC = DemoSpec(
    name="{name}",
    title="{title}",
    description="{description}",
    runtime="{package}.{name}.runtime",
    tab="{package}.{name}.tab",
    framework="none",
)
'''

IMAGE_RUNTIME = '''"""The {name} model, in its worker process: load() once, predict() per photo.

The placeholder is a tiny numpy model (a photo's mean colour and contrast, scored
by a linear layer) so the tab answers before any training: replace `placeholder`
with your training's output folder, and `features`/`predict` with your model."""

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from demohub.kit.classify import build_result
from demohub.kit.images import load_image

LABELS = ["bright", "dark"]
THRESHOLD = 0.6


def placeholder(model_dir: Path) -> None:
    """An untrained model folder: bright photos score high on the first class."""
    weights = np.array([[4.0, 4.0, 4.0, 0.0], [-4.0, -4.0, -4.0, 0.0]], dtype=np.float32)
    save_file({{"classifier.weight": weights, "classifier.bias": np.array([-6.0, 6.0], np.float32)}},
              str(model_dir / "model.safetensors"))
    (model_dir / "config.json").write_text(json.dumps({{"labels": LABELS, "trained": False}}))


def load(model_dir: Path) -> dict:
    config = json.loads((Path(model_dir) / "config.json").read_text())
    tensors = load_file(str(Path(model_dir) / "model.safetensors"))
    return {{"weight": tensors["classifier.weight"], "bias": tensors["classifier.bias"],
            "labels": config["labels"], "trained": config.get("trained", True)}}


def features(photo) -> np.ndarray:
    """Mean red, green, blue and contrast, each in 0..1."""
    pixels = np.asarray(photo.resize((64, 64)), dtype=np.float32) / 255.0
    return np.array([*pixels.mean(axis=(0, 1)), pixels.std()], dtype=np.float32)


def predict(model: dict, request: dict):
    photo = load_image(request["image"])  # refuses what is not a photo, with a sentence
    logits = model["weight"] @ features(photo) + model["bias"]
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    return build_result(probabilities, model["labels"], THRESHOLD, trained=model["trained"],
                        details=f"Mean brightness {{features(photo)[:3].mean():.2f}}.")
'''

IMAGE_TAB = '''"""The {name} tab, in the hub process: photo in, verdict out (the worker decodes the photo)."""

import gradio as gr

from demohub.kit import api
from demohub.kit.photo import PhotoUpload
from demohub.kit.verdict import PLACEHOLDER_BANNER, VerdictLabel


def build(ctx) -> None:
    with gr.Row():
        with gr.Column():
            photo = PhotoUpload(label="Photo (JPEG, PNG or WebP)")
            submit = gr.Button("Classify", variant="primary")
        with gr.Column():
            label = api.describe(VerdictLabel(label="Label"), api.LABEL)
            report = api.describe(gr.Markdown(label="Report"), api.REPORT)
            verdict = api.describe(gr.JSON(label="Verdict"), api.VERDICT)

    def classify(photo: str | None, progress=gr.Progress()):
        """Which class a photo shows.

        Args:
            photo: a photo (JPEG, PNG or WebP), sent as a file
        Returns:
            label: the predicted class or 'Uncertain', with every class's probability
            report: the verdict as Markdown
            verdict: the verdict as JSON
        """
        if not photo:
            raise ctx.input_error("Upload a photo first (from Python: gradio_client.handle_file('photo.jpg')).")
        result = ctx.predict({{"image": photo}}, progress)
        banner = "" if result.trained else PLACEHOLDER_BANNER + "\\n\\n"
        return result, banner + result.details, result.to_json()

    submit.click(classify, inputs=[photo], outputs=[label, report, verdict], api_name=ctx.api_name,
                 concurrency_limit=ctx.concurrency_limit)
'''

TEXT_RUNTIME = '''"""The {name} model, in its worker process: load() once, predict() per text.

The placeholder is a tiny numpy model (hashed words, scored by a linear layer) so
the tab answers before any training: replace `placeholder` with your training's
output folder, and `features`/`predict` with your model."""

import json
import re
import zlib
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from demohub.errors import InputError

LABELS = ["question", "statement"]
BUCKETS = 64
MAX_CHARS = 2000
WORD = re.compile(r"[\\w']+|[?!.]")


def bucket(word: str) -> int:
    return zlib.crc32(word.lower().encode()) % BUCKETS


def placeholder(model_dir: Path) -> None:
    """An untrained model folder: question words and "?" score for the first class."""
    weights = np.zeros((len(LABELS), BUCKETS), dtype=np.float32)
    for word in ("?", "what", "who", "why", "how", "when", "where", "which"):
        weights[0, bucket(word)] += 1.0
    weights[1] = 0.3
    save_file({{"classifier.weight": weights}}, str(model_dir / "model.safetensors"))
    (model_dir / "config.json").write_text(json.dumps({{"labels": LABELS, "trained": False}}))


def load(model_dir: Path) -> dict:
    config = json.loads((Path(model_dir) / "config.json").read_text())
    weight = load_file(str(Path(model_dir) / "model.safetensors"))["classifier.weight"]
    return {{"weight": weight, "labels": config["labels"], "trained": config.get("trained", True)}}


def features(text: str) -> np.ndarray:
    counts = np.zeros(BUCKETS, dtype=np.float32)
    for word in WORD.findall(text):
        counts[bucket(word)] += 1.0
    return counts


def predict(model: dict, request: dict) -> dict:
    text = request.get("text")
    if not isinstance(text, str) or not text.strip():
        raise InputError("Type some text first: it was empty.")
    if len(text) > MAX_CHARS:
        raise InputError(f"The text is {{len(text)}} characters; the limit is {{MAX_CHARS}}.")
    scores = model["weight"] @ features(text)
    probabilities = np.exp(scores - scores.max())
    probabilities /= probabilities.sum()
    return {{"label": model["labels"][int(np.argmax(scores))], "trained": model["trained"],
            "probabilities": {{k: round(float(p), 4) for k, p in zip(model["labels"], probabilities)}}}}
'''

TEXT_TAB = '''"""The {name} tab, in the hub process: text in, label and JSON out."""

import gradio as gr

from demohub.kit.verdict import PLACEHOLDER_BANNER


def build(ctx) -> None:
    text = gr.Textbox(label="Text", lines=2)
    submit = gr.Button("Classify", variant="primary")
    label = gr.Label(label="Label")
    result = gr.JSON(label="Result")
    banner = gr.Markdown()

    def classify(text: str, progress=gr.Progress()):
        """Which class a text belongs to.

        Args:
            text: the text to classify
        Returns:
            label: every class's probability
            result: the answer as JSON (label, probabilities, trained)
        """
        if not text or not text.strip():
            raise ctx.input_error("Type some text first.")
        out = ctx.predict({{"text": text}}, progress)
        return out["probabilities"], out, "" if out["trained"] else PLACEHOLDER_BANNER

    submit.click(classify, inputs=[text], outputs=[label, result, banner], api_name=ctx.api_name,
                 concurrency_limit=ctx.concurrency_limit)
'''

TEST = '''"""The {name} demo (written by `python -m demohub new`): its contract, its runtime
end to end, and a real hub answering through gradio_client."""

import importlib
from pathlib import Path

import pytest

from demohub.contract import check_runtime, check_tab
from support import running_hub

FOLDER = Path(__file__).resolve().parents[1] / "{package}" / "{name}"


@pytest.fixture(scope="module")
def runtime():
    return importlib.import_module("{package}.{name}.runtime")


def test_it_keeps_the_contract(runtime):
    check_runtime(runtime)
    check_tab(importlib.import_module("{package}.{name}.tab"))


def test_its_placeholder_model_answers(runtime, tmp_path):
    runtime.placeholder(tmp_path)
    model = runtime.load(tmp_path)
{runtime_checks}


def test_a_hub_serves_it(tmp_path):
    with running_hub("--demos-dir", str(FOLDER.parent), "--only", "{name}",
                     "--models-dir", str(tmp_path / "models")) as server:
{hub_checks}
'''

IMAGE_RUNTIME_CHECKS = '''    from PIL import Image

    for colour, expected in (((250, 250, 240), "bright"), ((10, 10, 20), "dark")):
        photo = tmp_path / f"{{expected}}.png"
        Image.new("RGB", (64, 48), colour).save(photo)
        result = runtime.predict(model, {{"image": str(photo)}})
        assert result.label == expected and not result.trained'''

IMAGE_HUB_CHECKS = '''        from gradio_client import handle_file
        from PIL import Image

        photo = tmp_path / "bright.png"
        Image.new("RGB", (64, 48), (250, 250, 240)).save(photo)
        label, report, verdict = server.client().predict(handle_file(str(photo)), api_name="/{name}")
        assert verdict["top_class"] == "bright" and verdict["trained"] is False'''

TEXT_RUNTIME_CHECKS = '''    assert runtime.predict(model, {{"text": "What is a leaf?"}})["label"] == "question"
    assert runtime.predict(model, {{"text": "A leaf is green."}})["label"] == "statement"
    from demohub.errors import InputError

    with pytest.raises(InputError):
        runtime.predict(model, {{"text": "  "}})'''

TEXT_HUB_CHECKS = '''        label, result, banner = server.client().predict("Why is the sky blue?", api_name="/{name}")
        assert result["label"] == "question" and result["trained"] is False'''

FILES = {
    "image": (IMAGE_RUNTIME, IMAGE_TAB, IMAGE_RUNTIME_CHECKS, IMAGE_HUB_CHECKS, "a photo in, a class out"),
    "text": (TEXT_RUNTIME, TEXT_TAB, TEXT_RUNTIME_CHECKS, TEXT_HUB_CHECKS, "a text in, a class out"),
}


def check_name(name: str, demos_dir: Path) -> str | None:
    """Why `name` cannot be a new demo, or None."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
        return f"{name!r}: use lowercase letters, digits and '_', starting with a letter (it names a package)"
    if (demos_dir / name).exists():
        return f"{demos_dir / name} exists already; choose another name"
    return None


def write(name: str, kind: str, demos_dir: Path, tests_dir: Path) -> list[Path]:
    """Write the demo folder (moved in whole) and its test; returns what was written."""
    runtime, tab, runtime_checks, hub_checks, what = FILES[kind]
    title = name.replace("_", " ").capitalize()
    values = {"name": name, "title": title, "package": demos_dir.name, "what": what,
              "description": f"A {kind} classifier: {what} (an untrained placeholder until you train it)."}
    staging = demos_dir.parent / f".{name}.new"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        (staging / "__init__.py").write_text(SPEC.format(**values))
        (staging / "runtime.py").write_text(runtime.format(**values))
        (staging / "tab.py").write_text(tab.format(**values))
        staging.rename(demos_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    test = tests_dir / f"test_demo_{name}.py"
    test.write_text(TEST.format(**values, runtime_checks=runtime_checks.format(**values),
                                hub_checks=hub_checks.format(**values)))
    return [demos_dir / name, test]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demohub", description="The demo hub's author tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new", help="write a working demo folder and its test")
    new.add_argument("name", help="the demo's name: its folder, endpoint and package")
    new.add_argument("--kind", choices=KINDS, required=True, help="what the demo takes: a photo or a text")
    new.add_argument("--demos-dir", type=Path, default=PROJECT_ROOT / "demos")
    new.add_argument("--tests-dir", type=Path, default=PROJECT_ROOT / "tests")
    args = parser.parse_args(argv)
    problem = check_name(args.name, args.demos_dir)
    if problem:
        parser.error(problem)
    written = write(args.name, args.kind, args.demos_dir.resolve(), args.tests_dir.resolve())
    print(f"wrote {written[0]}/ (SPEC, runtime.py, tab.py) and {written[1]}\n"
          f"next: make dev (a running one shows the new tab already), then "
          f".venv/bin/python -m pytest {written[1]}", file=sys.stderr)
    return 0
