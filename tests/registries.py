"""Registries over the numpy-only test demos, shared by the registry, copies and
pipeline suites (tests/test_registry.py, test_copies.py, test_pipeline.py)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from demohub.backends import make_backend
from demohub.discovery import discover
from demohub.registry import Limits, Registry
from demohub.sources import ModelSources
from demohub.spec import ModelSource
from support import TEST_DEMOS


def make_model(folder: Path, **config) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"trained": True, **config}))
    return folder


def make_registry(tmp_path: Path, method: str, limits: Limits = Limits(), copies: int = 1,
                  alpha: dict | None = None, beta: dict | None = None, **spec_changes) -> Registry:
    """A registry over the test demos whose local backend starts workers by
    `method` and runs up to `copies` of a busy model; alpha's and beta's model
    folders hold the given configs."""
    specs = [dataclasses.replace(s, **spec_changes) for s in discover(TEST_DEMOS)]
    overrides = {name: ModelSource(local_dir=make_model(tmp_path / name, **config))
                 for name, config in (("alpha", alpha), ("beta", beta)) if config is not None}
    sources = ModelSources(specs, tmp_path / "models", tmp_path / "placeholders", overrides)
    options = {"specs": specs, "template_ttl_s": limits.idle_ttl_s} if method == "template" else {}
    backend = make_backend(method, max_copies=copies, threads=limits.worker_threads, **options)
    return Registry(specs, sources, limits, backend=backend)


def state(registry: Registry, name: str):
    return next(s for s in registry.status() if s.name == name)


def wait_in_flight(registry: Registry, name: str, calls: int = 1, timeout: float = 10.0) -> None:
    """Wait until `calls` requests are inside the registry for `name` (a model
    with a request in flight is never evicted): what a fixed sleep used to hope for."""
    deadline = time.monotonic() + timeout
    while state(registry, name).in_flight < calls:
        assert time.monotonic() < deadline, f"{name} never had {calls} request(s) in flight"
        time.sleep(0.01)
