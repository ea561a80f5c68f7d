"""The app people write today, kept only as the benchmark's baseline: ONE Gradio
process that imports every framework and loads every model at startup.

    .venv/bin/python bench/baseline_app.py --port 7870     # serve on 127.0.0.1:7870
    .venv/bin/python bench/baseline_app.py --prepare       # build missing placeholder folders, exit
    .venv/bin/python bench/baseline_app.py --root /tmp/old-checkout --port 7870   # another commit's demos

It serves the hub's demos from the same code: each demo's `runtime` (load /
predict) runs in this process, and each demo's `tab.build(ctx)` lays out the
same components and the same public event (`/cassava`, `/durian`,
`/questions`) with the same outputs, queue size and per-event concurrency
limit. Model folders follow the hub's rule (`models/<name>/` if it has a
config.json, else the placeholder under `<cache-dir>/placeholders/<name>`), so
with the same `--cache-dir` both apps serve the same weights.

`bench/vs_baseline.py` runs it side by side with `hub.py`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

# torchvision must be in the process before TensorFlow, or importing it segfaults.
import torch  # noqa: F401
import torchvision  # noqa: F401

import gradio as gr

#: The project this file belongs to; `--root` serves another checkout's demos instead.
ROOT = Path(__file__).resolve().parent.parent


def log(event: str, **fields: Any) -> None:
    print(json.dumps({"ts": round(time.time(), 3), "event": event, **fields}), file=sys.stderr, flush=True)


def model_folder(spec: Any, models_dir: Path, placeholder_dir: Path) -> tuple[Path, bool]:
    """(folder, is_placeholder) by the hub's rule for a demo without a Hub source."""
    local = spec.model.local_dir or models_dir / spec.name
    if (local / "config.json").is_file():
        return local, False
    return placeholder_dir / spec.name, True


def ensure_placeholder(runtime: ModuleType, target: Path) -> None:
    """The runtime's untrained folder, written once, the way the hub's worker does it."""
    from demohub.backends.local.worker import build_placeholder

    build_placeholder(runtime, target)


@dataclass
class LocalContext:
    """The interface of `demohub.web.ui.TabContext`, answered by the model in this process."""

    spec: Any  # the checkout's demohub.spec.DemoSpec
    runtime: ModuleType
    model: Any
    input_error_type: type[Exception]  # the checkout's demohub.errors.InputError

    @property
    def api_name(self) -> str:
        return self.spec.api_name

    @property
    def concurrency_limit(self) -> int:
        return self.spec.baseline_concurrency

    def predict(self, request: Any, progress: gr.Progress | None = None) -> Any:
        try:
            return self.runtime.predict(self.model, request)
        except self.input_error_type as exc:
            raise gr.Error(str(exc), title=self.spec.title) from None
        except Exception as exc:  # noqa: BLE001 - the hub shows a model failure the same way
            raise gr.Error(f"the {self.spec.name} model failed on this request: "
                           f"{type(exc).__name__}: {exc}", title=self.spec.title) from None

    def input_error(self, message: str) -> gr.Error:
        return gr.Error(str(self.input_error_type(message)), title="Input error")


def load_all(specs: list, models_dir: Path, placeholder_dir: Path,
             input_error_type: type[Exception]) -> list[LocalContext]:
    contexts = []
    for spec in specs:
        started = time.perf_counter()
        runtime = importlib.import_module(spec.runtime)
        imported = time.perf_counter()
        folder, placeholder = model_folder(spec, models_dir, placeholder_dir)
        if placeholder:
            ensure_placeholder(runtime, folder)
        model = runtime.load(folder)
        log("load", model=spec.name, import_s=round(imported - started, 2),
            load_s=round(time.perf_counter() - imported, 2), folder=str(folder), placeholder=placeholder,
            runtime_file=getattr(runtime, "__file__", None))
        contexts.append(LocalContext(spec=spec, runtime=runtime, model=model, input_error_type=input_error_type))
    return contexts


def build_blocks(contexts: list[LocalContext]) -> gr.Blocks:
    with gr.Blocks(title="Demo hub (one-process baseline)") as blocks:
        gr.Markdown("# Demo hub, one-process baseline\nEvery model was loaded at startup in this process.")
        with gr.Tabs():
            for ctx in contexts:
                with gr.Tab(ctx.spec.title, id=ctx.spec.name, elem_id=f"tab-{ctx.spec.name}"):
                    gr.Markdown(f"## {ctx.spec.title}\n{ctx.spec.description}")
                    importlib.import_module(ctx.spec.tab).build(ctx)
    return blocks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=7870)
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="the checkout whose demohub, demos/ and models/ are served (default: this one)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="placeholders live in <cache-dir>/placeholders/<name>, as in the hub "
                             "(default: <root>/.cache)")
    parser.add_argument("--queue-size", type=int, default=32)
    parser.add_argument("--only", default="", help="comma-separated demo names (default: all)")
    parser.add_argument("--prepare", action="store_true", help="build missing placeholder folders and exit")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    root = args.root.resolve()
    sys.path.insert(0, str(root))
    from demohub.discovery import discover
    from demohub.errors import InputError

    only = tuple(n.strip() for n in args.only.split(",") if n.strip())
    specs = discover(root / "demos", only)
    models_dir = root / "models"
    placeholder_dir = (args.cache_dir or root / ".cache").resolve() / "placeholders"
    if args.prepare:
        for spec in specs:
            folder, placeholder = model_folder(spec, models_dir, placeholder_dir)
            if placeholder:
                ensure_placeholder(importlib.import_module(spec.runtime), folder)
            log("prepared", model=spec.name, folder=str(folder), placeholder=placeholder)
        return 0
    contexts = load_all(specs, models_dir, placeholder_dir, InputError)
    blocks = build_blocks(contexts)
    blocks.queue(max_size=args.queue_size, default_concurrency_limit=1)
    log("serving", port=args.port, startup_s=round(time.perf_counter() - started, 2))
    blocks.launch(server_name="127.0.0.1", server_port=args.port, ssr_mode=False, share=False, quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
