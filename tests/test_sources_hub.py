"""Model folders from the Hugging Face Hub, with the real `huggingface_hub`
client talking to a local stand-in server (HF_ENDPOINT)."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
from gradio_client.exceptions import AppError

from demohub.backends import make_backend
from demohub.discovery import discover
from demohub.errors import ModelUnavailable
from demohub.registry import Registry
from demohub.sources import ModelSources, SourceState
from demohub.spec import ModelSource
from fakehub import FakeHub
from support import TEST_DEMOS, running_hub


def config(marker: str) -> dict[str, bytes]:
    return {"config.json": json.dumps({"trained": True, "marker": marker}).encode(),
            "README.md": b"# test model\n", "examples/note.txt": b"x" * 50_000}


@pytest.fixture
def fake_hub(monkeypatch):
    hub = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    yield hub
    hub.stop()


def make_registry(tmp_path, overrides):
    specs = discover(TEST_DEMOS)
    sources = ModelSources(specs, tmp_path / "models", tmp_path / "placeholders", overrides,
                           hub_cache_dir=tmp_path / "hf-cache")
    return sources, Registry(specs, sources, backend=make_backend("spawn"))


def test_pinned_revision_is_downloaded_and_served(tmp_path, fake_hub):
    pinned = fake_hub.add_commit("org/alpha", config("first"))
    fake_hub.add_commit("org/alpha", config("second"))  # main moves on; the pin must not
    sources, registry = make_registry(tmp_path, {"alpha": ModelSource("org/alpha", pinned)})
    try:
        sources.start()
        assert registry.predict("alpha", {})["marker"] == "first"
        status = sources.status("alpha")
        assert status.state == SourceState.READY and status.resolved.origin == "hub"
        assert status.fraction == 1.0 and status.downloaded_bytes >= 50_000
        assert (tmp_path / "hf-cache" / "models--org--alpha" / "snapshots" / pinned).is_dir()
        assert fake_hub.requests[("GET", f"/org/alpha/resolve/{pinned}/config.json")] == 1
    finally:
        registry.close()


def test_branch_revision_follows_the_branch(tmp_path, fake_hub):
    fake_hub.add_commit("org/alpha", config("first"))
    fake_hub.add_commit("org/alpha", config("second"))
    _, registry = make_registry(tmp_path, {"alpha": ModelSource("org/alpha", "main")})
    try:
        assert registry.predict("alpha", {})["marker"] == "second"
    finally:
        registry.close()


def test_unreachable_hub_falls_back_to_the_cache(tmp_path, fake_hub):
    pinned = fake_hub.add_commit("org/alpha", config("cached"))
    sources, registry = make_registry(tmp_path, {"alpha": ModelSource("org/alpha", pinned)})
    sources.resolve("alpha")
    registry.close()
    fake_hub.stop()
    sources, registry = make_registry(tmp_path, {"alpha": ModelSource("org/alpha", pinned)})
    try:
        assert registry.predict("alpha", {})["marker"] == "cached"
        assert sources.status("alpha").resolved.origin in {"hub", "hub cache"}
    finally:
        registry.close()


def test_no_hub_and_no_cache_is_a_clear_error(tmp_path, fake_hub):
    sources, registry = make_registry(tmp_path, {"alpha": ModelSource("org/missing", "main")})
    try:
        with pytest.raises(ModelUnavailable, match=r"Could not download the alpha model org/missing@main.*--model alpha="):
            registry.predict("alpha", {})
        assert sources.status("alpha").state == SourceState.FAILED
        assert registry.predict("beta", {"value": 1})["echo"] == 1  # placeholder, unaffected
    finally:
        registry.close()


def test_running_hub_downloads_in_background_and_isolates_a_failed_source(tmp_path):
    fake = FakeHub().start()
    pinned = fake.add_commit("org/alpha", config("from the hub"))
    env = {"HF_ENDPOINT": fake.url, "HF_HOME": str(tmp_path / "hf")}
    args = ("--demos-dir", str(TEST_DEMOS), "--model", f"alpha=org/alpha@{pinned}",
            "--model", "beta=org/gone@main")
    try:
        with running_hub(*args, env=env) as hub:
            client = hub.client()
            assert client.predict("{}", api_name="/alpha")["marker"] == "from the hub"
            with pytest.raises(AppError, match="Could not download the beta model"):
                client.predict("{}", api_name="/beta")
            metrics = hub.get("/metrics")[1]
            assert 'demohub_model_state{model="beta",state="failed"} 1' in metrics
            assert '"event": "download", "model": "alpha"' in hub.logs()
        fake.stop()
        env["HF_HUB_OFFLINE"] = "1"
        with running_hub(*args, env=env) as hub:
            assert hub.client().predict("{}", api_name="/alpha")["marker"] == "from the hub"
    finally:
        fake.stop()


def test_failed_download_is_tried_again_with_backoff(tmp_path, fake_hub):
    """A few seconds without the repo (or the network) no longer disables the
    tab until a restart: the next attempt comes after a growing wait."""
    specs = discover(TEST_DEMOS)
    sources = ModelSources(specs, tmp_path / "models", tmp_path / "placeholders",
                           {"alpha": ModelSource("org/late", "main")}, hub_cache_dir=tmp_path / "hf-cache",
                           retry_s=0.5)
    with pytest.raises(ModelUnavailable, match=r"tries again in \d+ s"):
        sources.resolve("alpha")
    status = sources.status("alpha")
    assert status.state == SourceState.FAILED and 0 < status.retry_in_s <= 0.5
    with pytest.raises(ModelUnavailable):
        sources.resolve("alpha")  # not due yet: no new request to the server
    assert status.failures == 1
    fake_hub.add_commit("org/late", config("late"))
    time.sleep(0.6)
    assert sources.resolve("alpha").origin == "hub"
    assert status.state == SourceState.READY and status.error is None and status.retry_in_s is None


def test_background_download_recovers_without_a_restart(tmp_path, fake_hub):
    specs = discover(TEST_DEMOS)
    sources = ModelSources(specs, tmp_path / "models", tmp_path / "placeholders",
                           {"alpha": ModelSource("org/late", "main")}, hub_cache_dir=tmp_path / "hf-cache",
                           retry_s=0.3)
    sources.start()
    try:
        deadline = time.monotonic() + 10
        while sources.status("alpha").failures < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sources.status("alpha").failures >= 2  # tried, waited, tried again
        fake_hub.add_commit("org/late", config("late"))
        while sources.status("alpha").state != SourceState.READY and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sources.status("alpha").state == SourceState.READY
    finally:
        sources.close()


def test_spec_model_files_limit_what_is_downloaded(tmp_path, fake_hub):
    pinned = fake_hub.add_commit("org/alpha", {**config("only config"), "model.onnx": b"o" * 1000,
                                               "model.safetensors": b"s" * 1000})
    specs = [dataclasses.replace(s, model_files=("config.json", "*.safetensors")) for s in discover(TEST_DEMOS)]
    sources = ModelSources(specs, tmp_path / "models", tmp_path / "placeholders",
                           {"alpha": ModelSource("org/alpha", pinned)}, hub_cache_dir=tmp_path / "hf-cache")
    folder = sources.resolve("alpha").path
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert ("GET", f"/org/alpha/resolve/{pinned}/model.onnx") not in fake_hub.requests
