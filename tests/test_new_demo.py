"""Adding a demo is one folder: this test writes a new demo package (its own
SPEC, runtime and tab) into a temporary demos folder, with its model folder in
stock Hugging Face layout, starts a real hub on it and calls it through
gradio_client. Nothing in the project is edited.

`write_demo` is shared with test_contract.py and test_batching.py."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest
from gradio_client.exceptions import AppError
from safetensors.numpy import save_file

from demohub.discovery import discover
from support import PROJECT_ROOT, mapped_framework_libs, running_hub

SPEC_TEMPLATE = '''\
from demohub.spec import DemoSpec

SPEC = DemoSpec(
    name={name!r},
    title={title!r},
    description="A test demo written by the test suite.",
    runtime="{package}.{name}.runtime",
    tab="{package}.{name}.tab",
    {extra}
)
'''

#: A text classifier with numpy weights: letters per class, scored by dot product.
RUNTIME = '''\
"""Counts letters; numpy and safetensors only."""
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from demohub.errors import InputError

ALPHABET = "abcdefghijklmnopqrstuvwxyz"


@dataclass
class Opaque:
    """Defined here, in a module the hub never imports: the hub must refuse it."""
    value: int


def load(model_dir):
    config = json.loads((Path(model_dir) / "config.json").read_text())
    weights = load_file(str(Path(model_dir) / "model.safetensors"))["classifier.weight"]
    labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    return {"weights": weights, "labels": labels}


def features(text):
    if not isinstance(text, str) or not text.strip():
        raise InputError("Type some words: the text was empty.")
    x = np.zeros(len(ALPHABET), dtype=np.float32)
    for ch in text.lower():
        if ch in ALPHABET:
            x[ALPHABET.index(ch)] += 1
    return x / max(1.0, x.sum())


def predict(model, request):
    text = request.get("text")
    if text == "opaque":
        return Opaque(1)
    if text == "boom":
        raise RuntimeError("the letter counter broke on purpose")
    scores = model["weights"] @ features(text)
    best = int(np.argmax(scores))
    return {"label": model["labels"][best], "scores": dict(zip(model["labels"], scores.round(4).tolist())),
            "letters": int(sum(ch.isalpha() for ch in text))}
'''

TAB = '''\
"""Textbox in, label and JSON out."""
import gradio as gr


def build(ctx):
    text = gr.Textbox(label="Words")
    button = gr.Button("Count")
    label = gr.Label(label="Class")
    result = gr.JSON(label="Result")

    def run(value, progress=gr.Progress()):
        out = ctx.predict({"text": value}, progress)
        return {out["label"]: 1.0}, out

    button.click(run, text, [label, result], api_name=ctx.api_name, concurrency_limit=ctx.concurrency_limit)
'''


def new_package_dir(tmp_path: Path) -> Path:
    """An empty demos folder with a fresh package name (no clash between tests)."""
    folder = tmp_path / f"newdemos_{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    return folder


def write_demo(demos_dir: Path, name: str, runtime: str = RUNTIME, tab: str = TAB, extra: str = "",
               title: str | None = None) -> Path:
    """demos_dir/name/{__init__,runtime,tab}.py; returns the demo folder."""
    folder = demos_dir / name
    folder.mkdir(parents=True)
    spec = SPEC_TEMPLATE.format(name=name, title=title or name.title(), package=demos_dir.name, extra=extra)
    (folder / "__init__.py").write_text(spec)
    if runtime is not None:
        (folder / "runtime.py").write_text(textwrap.dedent(runtime))
    if tab is not None:
        (folder / "tab.py").write_text(textwrap.dedent(tab))
    return folder


def write_stock_model(folder: Path) -> Path:
    """A folder as `transformers` would save it: config.json with model_type,
    architectures and id2label but no "framework", safetensors weights, a card."""
    folder.mkdir(parents=True)
    labels = {"0": "vowel-heavy", "1": "consonant-heavy"}
    config = {"architectures": ["LetterClassifier"], "model_type": "letters", "id2label": labels,
              "label2id": {v: int(k) for k, v in labels.items()}, "torch_dtype": "float32",
              "transformers_version": "4.57.0"}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    vowels = np.array([1.0 if ch in "aeiou" else 0.0 for ch in alphabet], dtype=np.float32)
    weights = np.stack([vowels * 2, 1 - vowels]).astype(np.float32)
    save_file({"classifier.weight": weights}, str(folder / "model.safetensors"))
    (folder / "README.md").write_text("# Letter counter\n\nA test model: vowels against consonants.\n")
    return folder


@pytest.fixture(scope="module")
def new_demo_hub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("newdemo")
    demos_dir = new_package_dir(tmp)
    write_demo(demos_dir, "letters", title="Letter counter")
    write_stock_model(tmp / "models" / "letters")
    with running_hub("--demos-dir", str(demos_dir), "--models-dir", str(tmp / "models"),
                     cache_dir=tmp / "cache") as server:
        yield server, demos_dir, tmp


def test_a_new_folder_is_a_new_endpoint_served_by_its_own_worker(new_demo_hub):
    server, demos_dir, _ = new_demo_hub
    client = server.client()
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == {f"/{s.api_name}" for s in discover(demos_dir)} == {"/letters"}

    label, result = client.predict("aeiou ea", api_name="/letters")
    assert result["label"] == label["label"] == "vowel-heavy"
    label, result = client.predict("rhythm strength", api_name="/letters")
    assert result["label"] == "consonant-heavy" and result["letters"] == 14

    status, page = server.get("/")
    assert status == 200 and "Letter counter" in page
    workers = server.worker_pids()
    assert len(workers) == 1  # the demo runs in its own process...
    assert not mapped_framework_libs(server.pid)  # ...and the hub still imports no framework


def test_its_errors_reach_the_client_as_sentences_and_the_hub_keeps_serving(new_demo_hub):
    server, _, _ = new_demo_hub
    client = server.client()
    with pytest.raises(AppError, match="Type some words"):
        client.predict("   ", api_name="/letters")
    with pytest.raises(AppError) as failed:
        client.predict("boom", api_name="/letters")
    assert "failed on this request" in str(failed.value)
    assert "Traceback" not in str(failed.value) and "on purpose" not in str(failed.value)
    # an object of a module the hub has not imported (think: a transformers output class)
    with pytest.raises(AppError, match="cannot use") as refused:
        client.predict("opaque", api_name="/letters")
    assert "Opaque" not in str(refused.value)
    assert "Opaque" in server.logs() and "plain data" in server.logs()
    assert client.predict("aaa", api_name="/letters")[1]["label"] == "vowel-heavy"


def test_its_stock_model_folder_publishes_without_a_framework_key(new_demo_hub):
    _, _, tmp = new_demo_hub
    out = subprocess.run([sys.executable, "-m", "demohub.publish", str(tmp / "models" / "letters"),
                          "org/letters", "--dry-run"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pytorch (inferred from the weights)" in out.stdout and "nothing uploaded" in out.stdout



#: a repo that ships every common weight format, as many Hub repos do
MIXED_REPO = ("config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5", "model.keras",
              "flax_model.msgpack", "onnx/model.onnx", "tokenizer.json", "README.md", "examples/1.jpg",
              ".gitattributes")


@pytest.mark.parametrize("name,expected", [
    ("cassava", {"config.json", "model.safetensors", "README.md"}),
    ("durian", {"config.json", "tf_model.h5", "model.keras", "README.md"}),
    ("questions", {"config.json", "model.safetensors", "tokenizer.json", "README.md"}),
])
def test_shipped_demos_download_only_the_files_their_runtime_reads(name, expected):
    from huggingface_hub.utils import filter_repo_objects  # what snapshot_download filters with

    spec = next(s for s in discover(PROJECT_ROOT / "demos") if s.name == name)
    assert set(filter_repo_objects(MIXED_REPO, allow_patterns=list(spec.model_files))) == expected


def test_the_questions_model_loads_from_exactly_its_model_files(tmp_path):
    pytest.importorskip("torch")
    from huggingface_hub.utils import filter_repo_objects

    from demos.questions import SPEC, runtime

    source = PROJECT_ROOT / "models" / "questions"
    shipped = [p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()]
    kept = list(filter_repo_objects(shipped, allow_patterns=list(SPEC.model_files)))
    assert len(kept) < len(shipped)  # something (examples/) is left out
    for rel in kept:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes((source / rel).read_bytes())
    model = runtime.load(tmp_path)
    assert runtime.predict(model, {"text": "Who wrote Hamlet?"})["coarse_label"] == "HUM"
