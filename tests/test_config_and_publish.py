"""Pure pieces: settings parsing, model sources, the publish command's checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from demohub.config import load_config, parse_size
from demohub.discovery import discover
from demohub.publish import FolderError, check_folder, main as publish_main
from demohub.spec import ModelSource
from support import PROJECT_ROOT, TEST_DEMOS


@pytest.mark.parametrize("text,expected", [("1024", 1024), ("800M", 800 * 2**20), ("1.5G", 3 * 2**29),
                                           ("2GiB", 2 * 2**30), ("64 kb", 64 * 2**10)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


def test_parse_size_rejects_nonsense():
    with pytest.raises(ValueError, match="try 4G"):
        parse_size("lots")


def test_model_source_parsing(tmp_path):
    assert ModelSource.parse("org/name@abc123") == ModelSource(repo_id="org/name", revision="abc123")
    assert ModelSource.parse("org/name") == ModelSource(repo_id="org/name")
    assert ModelSource.parse(str(tmp_path)).local_dir == tmp_path
    with pytest.raises(ValueError, match="neither an existing folder nor a Hub repo id"):
        ModelSource.parse("just-a-name")


def test_flags_and_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HUB_MAX_MODELS", "5")
    monkeypatch.setenv("HUB_MODEL_CASSAVA", "org/cassava@deadbeef")
    (tmp_path / "config.json").write_text("{}")  # a local model folder must be one
    config = load_config(["--memory-budget", "6G", "--idle-ttl", "0", "--model", f"questions={tmp_path}"])
    assert config.limits.max_models == 5
    assert config.limits.memory_budget == 6 * 2**30
    assert config.limits.idle_ttl_s is None
    assert config.models["cassava"] == ModelSource("org/cassava", "deadbeef")
    assert config.models["questions"].local_dir == tmp_path


def test_copies_default_to_the_cores_with_templates_and_one_with_spawn(monkeypatch):
    monkeypatch.delenv("HUB_MAX_COPIES", raising=False)
    cores = len(os.sched_getaffinity(0))
    assert load_config([]).backend_options["max_copies"] == max(1, min(4, cores))
    assert load_config(["--start-method", "spawn"]).backend_options["max_copies"] == 1
    assert load_config(["--start-method", "spawn", "--max-copies", "3"]).backend_options["max_copies"] == 3
    monkeypatch.setenv("HUB_MAX_COPIES", "1")
    assert load_config([]).backend_options["max_copies"] == 1


def test_discovery_is_sorted_and_sets_import_root():
    specs = discover(TEST_DEMOS)
    assert [s.name for s in specs] == ["alpha", "beta"]
    assert specs[0].import_root == TEST_DEMOS.parent
    assert [s.name for s in discover(TEST_DEMOS, only=("beta",))] == ["beta"]


def test_project_demos_are_discovered_without_importing_frameworks():
    import subprocess
    import sys

    code = ("import sys; from demohub.discovery import discover; from pathlib import Path; "
            "specs = discover(Path('demos')); "
            "import demohub.web.ui, demohub.web.app; "
            "heavy = sorted(m for m in ('torch','tensorflow','keras','tokenizers','torchvision') if m in sys.modules); "
            "print([s.name for s in specs], heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    _, heavy = out.stdout.strip().rsplit("] ", 1)
    assert heavy == "[]", out.stdout
    for spec in discover(PROJECT_ROOT / "demos"):
        assert spec.api_name == spec.name
        assert spec.runtime.startswith(f"demos.{spec.name}.")


def write_folder(folder: Path, config: dict, files=("model.safetensors", "README.md")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    for name in files:
        (folder / name).write_bytes(b"x")
    return folder


def test_publish_checks_the_folder(tmp_path):
    good = write_folder(tmp_path / "good", {"framework": "pytorch", "trained": True})
    assert check_folder(good).framework == "pytorch"
    cases = [
        (write_folder(tmp_path / "a", {"framework": "pytorch"}, files=("README.md",)), "needs one of"),
        (write_folder(tmp_path / "b", {"framework": "pytorch"}, files=("model.safetensors", "README.md", "old.pth")), "pickle"),
        (write_folder(tmp_path / "c", {"framework": "jax"}), "'framework' must be one of"),
        (write_folder(tmp_path / "d", {"framework": "pytorch"}, files=("model.safetensors",)), "README.md"),
        (write_folder(tmp_path / "e", {"framework": "pytorch", "trained": False}), "placeholder"),
        (tmp_path / "missing", "is not a folder"),
    ]
    for folder, message in cases:
        with pytest.raises(FolderError, match=message):
            check_folder(folder)



STOCK_CONFIG = {"architectures": ["BertForSequenceClassification"], "model_type": "bert",
                "id2label": {"0": "neg", "1": "pos"}, "transformers_version": "4.57.0"}


def test_publish_accepts_a_stock_hugging_face_config_without_framework(tmp_path):
    torch_like = check_folder(write_folder(tmp_path / "t", STOCK_CONFIG))
    assert (torch_like.framework, torch_like.inferred) == ("pytorch", True)
    keras_like = check_folder(write_folder(tmp_path / "k", STOCK_CONFIG, files=("tf_model.h5", "README.md")))
    assert keras_like.framework == "keras"
    sharded = check_folder(write_folder(tmp_path / "s", STOCK_CONFIG, files=(
        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "README.md")))
    assert sharded.framework == "pytorch"
    no_weights = check_folder(write_folder(tmp_path / "n", STOCK_CONFIG, files=("tokenizer.json", "README.md")))
    assert no_weights.framework is None
    # a stock repo's pickled weights are still refused, and the card is still required
    with pytest.raises(FolderError, match="pickle"):
        check_folder(write_folder(tmp_path / "b", STOCK_CONFIG, files=("pytorch_model.bin", "README.md")))
    with pytest.raises(FolderError, match="README.md"):
        check_folder(write_folder(tmp_path / "r", STOCK_CONFIG, files=("model.safetensors",)))
    with pytest.raises(FolderError, match="JSON object"):
        check_folder(write_folder(tmp_path / "l", ["not", "an", "object"]))

def test_publish_command_arguments(tmp_path, capsys):
    good = write_folder(tmp_path / "good", {"framework": "keras", "trained": True}, files=("model.keras", "README.md"))
    assert publish_main([str(good), "org/model", "--dry-run"]) == 0
    assert "dry run: nothing uploaded" in capsys.readouterr().out
    assert publish_main([str(good), "not-a-repo-id", "--dry-run"]) == 2
    assert "org/name" in capsys.readouterr().err
    assert publish_main([str(tmp_path / "nope"), "org/model"]) == 2


def test_mcp_flag_without_the_extra_says_how_to_install_it():
    """An environment set up before requirements.txt had the extra: `mcp` cannot be imported."""
    import subprocess
    import sys

    without_mcp = ("import runpy, sys; sys.modules['mcp'] = None; sys.argv = sys.argv[1:]; "
                   "runpy.run_path('hub.py', run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", without_mcp, "hub.py", "--mcp", "--demos-dir", str(TEST_DEMOS)],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "scripts/setup.sh" in out.stderr and 'pip install "gradio[mcp]==6.31.0"' in out.stderr
