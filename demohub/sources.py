"""Where each model folder comes from: a pinned Hugging Face Hub repo (downloaded
in the background at startup with `huggingface_hub`, falling back to its cache),
a local folder, or an untrained placeholder the worker builds when a demo has
no weights at all.

Downloads happen in the hub process (huggingface_hub is light); the framework
that reads the weights only ever runs in the worker.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Callable

from demohub import events
from demohub.errors import ModelUnavailable
from demohub.spec import DemoSpec, ModelSource


class SourceState(str, Enum):
    WAITING = "waiting"
    DOWNLOADING = "downloading"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    origin: str  # "hub", "hub cache", "local" or "placeholder"
    placeholder: bool = False


@dataclass
class SourceStatus:
    source: ModelSource
    state: SourceState = SourceState.WAITING
    resolved: ResolvedModel | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)
    #: byte-counting progress bars that huggingface_hub opened for this download
    bars: list = field(default_factory=list)
    failures: int = 0  # consecutive failed attempts
    retry_at: float | None = None  # monotonic time of the next attempt after a failure

    @property
    def retry_in_s(self) -> float | None:
        if self.retry_at is None or self.resolved is not None:
            return None
        return max(0.0, self.retry_at - time.monotonic())

    @property
    def downloaded_bytes(self) -> int:
        return max((int(bar.n) for bar in self.bars), default=0)

    @property
    def total_bytes(self) -> int:
        return max((int(bar.total or 0) for bar in self.bars), default=0)

    @property
    def fraction(self) -> float | None:
        total = self.total_bytes
        return min(1.0, self.downloaded_bytes / total) if total else None


def _progress_class(status: SourceStatus):
    """A silent tqdm that `snapshot_download` feeds byte counts into."""
    from tqdm.auto import tqdm

    class _Progress(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["file"] = open(os.devnull, "w")  # noqa: SIM115 - closed with the bar
            kwargs.pop("disable", None)
            super().__init__(*args, **kwargs)
            if kwargs.get("unit") == "B":
                status.bars.append(self)

        def close(self):
            super().close()
            self.fp.close()

    return _Progress


class ModelSources:
    """Resolves each demo's model folder; Hub downloads start at `start()`."""

    def __init__(self, specs: list[DemoSpec], models_dir: Path, placeholder_dir: Path,
                 overrides: dict[str, ModelSource] | None = None, hub_cache_dir: Path | None = None,
                 retry_s: float = 5.0, retry_cap_s: float = 300.0):
        self._models_dir = models_dir
        self._hub_cache_dir = hub_cache_dir  # None: huggingface_hub's own (HF_HOME, HF_HUB_CACHE)
        self._placeholder_dir = placeholder_dir
        self._retry_s, self._retry_cap_s = retry_s, retry_cap_s
        self._closed = threading.Event()
        self._background: set[str] = set()
        self._files = {spec.name: spec.model_files or None for spec in specs}
        overrides = overrides or {}
        self._status = {
            spec.name: SourceStatus(source=overrides.get(spec.name, spec.model)) for spec in specs
        }

    def add(self, spec: DemoSpec, override: ModelSource | None = None) -> None:
        """A demo found after start (--reload): its source, resolved on its first
        load (a Hub download then runs in that request's thread)."""
        if spec.name not in self._status or self._status[spec.name].source != (override or spec.model):
            self._files[spec.name] = spec.model_files or None
            self._status[spec.name] = SourceStatus(source=override or spec.model)

    def local_folder(self, name: str) -> Path | None:
        """The folder `name` loads from when it is a local one (watched by --reload)."""
        source = self._status[name].source
        if source.is_hub:
            return None
        return source.local_dir or self._models_dir / name

    def start(self) -> None:
        """Begin every Hub download in the background; the page does not wait.

        Each download thread is owned by this object and lives until its model
        is downloaded (or found in the cache) or `close()`; after a failure it
        tries again with exponential back-off, so a few seconds without network
        at boot do not disable a tab for good."""
        for name, status in self._status.items():
            if status.source.is_hub:
                self._background.add(name)
                threading.Thread(
                    target=self._download_until_done, args=(name, status), daemon=True,
                    name=f"download-{name}",
                ).start()

    def close(self) -> None:
        self._closed.set()

    def status(self, name: str) -> SourceStatus:
        return self._status[name]

    def resolve(self, name: str, tick: Callable[[SourceStatus], None] | None = None,
                timeout: float = 3600.0) -> ResolvedModel:
        """The model folder for `name`, waiting for its download if one runs."""
        status = self._status[name]
        source = status.source
        if not source.is_hub:
            return self._resolve_local(name, source)
        if name not in self._background:
            # no background thread (tests, scripts): download in this thread when due.
            due = status.state == SourceState.WAITING or (
                status.state == SourceState.FAILED and status.retry_in_s == 0.0)
            if due:
                self._attempt(name, status)
        deadline = time.monotonic() + timeout
        while not status.done.wait(0.25):
            if tick:
                tick(status)
            if time.monotonic() > deadline:
                raise ModelUnavailable(f"downloading the {name} model took longer than {timeout:.0f} s")
        if status.resolved is None:
            error = status.error or f"the {name} model is unavailable"
            retry = status.retry_in_s
            raise ModelUnavailable(error + (f" The hub tries again in {retry:.0f} s." if retry is not None else ""))
        return status.resolved

    def _resolve_local(self, name: str, source: ModelSource) -> ResolvedModel:
        folder = source.local_dir or self._models_dir / name
        if (folder / "config.json").is_file():
            return ResolvedModel(path=folder, origin="local")
        if source.local_dir is not None:
            raise ModelUnavailable(
                f"the {name} model folder {folder} has no config.json; point the hub at a "
                "complete model folder (config.json + weights) or remove the override"
            )
        return ResolvedModel(path=self._placeholder_dir / name, origin="placeholder", placeholder=True)

    def _download_until_done(self, name: str, status: SourceStatus) -> None:
        while not self._closed.is_set():
            self._attempt(name, status)
            if status.resolved is not None or self._closed.wait(status.retry_in_s or 0.0):
                return

    def _attempt(self, name: str, status: SourceStatus) -> None:
        """One download (or, failing that, the cached copy), bounded by the
        client's own timeouts; schedules the next attempt after a failure."""
        from huggingface_hub import snapshot_download

        source = status.source
        status.done.clear()
        status.state = SourceState.DOWNLOADING
        started = time.perf_counter()
        events.event("download_start", name, repo=source.repo_id, revision=source.revision,
                     attempt=status.failures + 1)
        common = dict(repo_id=source.repo_id, revision=source.revision, cache_dir=self._hub_cache_dir,
                      allow_patterns=self._files.get(name))
        try:
            path = snapshot_download(**common, endpoint=os.environ.get("HF_ENDPOINT"),
                                     tqdm_class=_progress_class(status))
            status.resolved = ResolvedModel(path=Path(path), origin="hub")
            events.event("download", name, seconds=time.perf_counter() - started, path=path)
        except Exception as exc:  # noqa: BLE001 - any failure falls back to the cache
            try:
                path = snapshot_download(**common, local_files_only=True)
                status.resolved = ResolvedModel(path=Path(path), origin="hub cache")
                events.event("download_failed_using_cache", name, error=str(exc)[:300], path=path)
            except Exception:  # noqa: BLE001
                status.failures += 1
                wait = min(self._retry_cap_s, self._retry_s * 2 ** (status.failures - 1))
                status.retry_at = time.monotonic() + wait
                status.error = self._explain(name, source, exc)
                events.event("download_failed", name, error=str(exc)[:300], retry_in_s=wait)
        if status.resolved is not None:
            status.error, status.retry_at, status.failures = None, None, 0
        status.state = SourceState.READY if status.resolved else SourceState.FAILED
        status.done.set()

    @staticmethod
    def _explain(name: str, source: ModelSource, exc: Exception) -> str:
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        return (
            f"Could not download the {name} model {source.describe()} from {endpoint} and "
            f"there is no cached copy ({type(exc).__name__}: {reason}). To fix: check the network "
            "and HF_TOKEN for private repos, or start the hub with "
            f"`--model {name}=/path/to/model-folder` to use a local copy."
        )
