"""The demo contract: what a folder under `demos/` declares about itself.

A demo package exports `SPEC: DemoSpec`. Two modules hang off it by name so
the main process never imports them by accident:

- `SPEC.runtime` (e.g. "demos.cassava.runtime") runs only inside the demo's
  worker process. It defines `load(model_dir) -> model` and
  `predict(model, request) -> result`, and optionally `placeholder(model_dir)`,
  which writes an untrained model folder when no weights exist, and
  `predict_batch(model, requests) -> results` (used when `max_batch` > 1).
  The typed form is `demohub.contract.Runtime`.
- `SPEC.tab` (e.g. "demos.cassava.tab") runs in the main process. It defines
  `build(ctx: TabContext)`, which lays out the demo's inputs and outputs inside
  its tab and wires one event with `api_name=ctx.api_name`
  (`demohub.contract.Tab`; checked when the hub discovers the demo).

Requests and results cross the process boundary pickled, so they must be plain
data: builtins, numpy arrays, or dataclasses from light modules (never torch or
TensorFlow objects).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ModelSource:
    """Where a demo's model folder comes from.

    Either a Hugging Face Hub repo pinned to a revision, or a local folder.
    With neither set, the hub looks in `models/<demo name>/`.
    """

    repo_id: str | None = None
    revision: str | None = None
    local_dir: Path | None = None

    @classmethod
    def parse(cls, text: str) -> "ModelSource":
        """Parse `org/repo@revision` or a filesystem path (anything that exists,
        or that starts with `/`, `.` or `~`)."""
        text = text.strip()
        if not text:
            raise ValueError("empty model source")
        looks_like_path = text.startswith(("/", ".", "~")) or Path(text).exists()
        if looks_like_path:
            return cls(local_dir=Path(text).expanduser())
        repo_id, _, revision = text.partition("@")
        if repo_id.count("/") != 1:
            raise ValueError(
                f"model source {text!r} is neither an existing folder nor a Hub repo id "
                "like 'org/name@revision'"
            )
        return cls(repo_id=repo_id, revision=revision or None)

    @property
    def is_hub(self) -> bool:
        return self.repo_id is not None

    def describe(self) -> str:
        if self.repo_id:
            return f"{self.repo_id}@{self.revision or 'main'}"
        return str(self.local_dir) if self.local_dir else "(default folder)"


@dataclass(frozen=True)
class DemoSpec:
    """Everything the hub needs to know about a demo before its model loads."""

    name: str
    title: str
    description: str
    runtime: str
    tab: str
    model: ModelSource = field(default_factory=ModelSource)
    examples: tuple = ()
    predict_timeout_s: float = 60.0
    load_timeout_s: float = 300.0
    #: the author's guess at a first load, shown to visitors labelled as a guess until
    #: this hub has measured one (measurements are remembered in --cache-dir); None: no guess
    expected_load_s: float | None = None
    #: calls one loaded copy of the model takes at once in the one-process app the hub
    #: is compared with (bench/baseline_app.py's event limit). The hub never reads it:
    #: it runs one call per worker process and adds copies of a busy model instead
    #: (see `max_copies`).
    baseline_concurrency: int = 1
    #: most worker processes the hub may run of this model when its requests
    #: pile up; None: the hub's `--max-copies`. 1 for a model that must not be
    #: duplicated (one GPU's memory, a licence).
    max_copies: int | None = None
    #: glob patterns of the files the runtime needs from a Hub repo (passed to
    #: `snapshot_download(allow_patterns=...)`); empty: the whole repo. A repo that
    #: ships several weight formats then downloads only the one the demo reads.
    model_files: tuple[str, ...] = ()
    #: the framework family the runtime imports ("torch", "tensorflow", "none"):
    #: workers of one family can be forked from one template process that has
    #: imported it (`--start-method template`). "auto" reads the runtime's imports.
    framework: str = "auto"
    #: most concurrent requests coalesced into one worker call; > 1 only for a
    #: runtime with `predict_batch` (see demohub/batching.py). 1: one call each.
    max_batch: int = 1
    #: "auto" (CUDA when the machine has it, else CPU), "cpu", "cuda" or "cuda:N";
    #: HUB_DEVICE / --device and HUB_DEVICE_<NAME> override it (demohub/device.py).
    device: str = "auto"
    #: sys.path entry the worker needs to import `runtime` (set by discovery).
    import_root: Path | None = None

    @property
    def api_name(self) -> str:
        """The public endpoint is the demo's own name: `/cassava`, `/questions`."""
        return self.name
