"""Publish a local model folder to a Hugging Face Hub repo and print the
revision to pin.

    python -m demohub.publish models/questions my-org/trec-questions [--private]

The folder is checked before anything is uploaded: a Hub-layout folder with a
valid config.json, weights in a format the hub loads without unpickling, and a
model card. A stock Hugging Face config.json (no "framework" key) is accepted:
the framework is inferred from the weight files, or left open when there are
none to judge by. A pinned revision (the commit sha printed at the end) is what goes
into a demo's `ModelSource` or `--model NAME=REPO@SHA`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

#: Weights each framework may ship. Pickle-based formats are refused outright.
WEIGHTS = {
    "pytorch": ("model.safetensors",),
    "keras": ("model.keras", "model.h5"),
    "numpy": (),
}
PICKLE_SUFFIXES = {".pth", ".pt", ".pkl", ".pickle", ".bin", ".ckpt", ".joblib"}
#: weight-file suffix -> framework, for configs that do not say (stock Hugging Face ones).
INFER = {".safetensors": "pytorch", ".keras": "keras", ".h5": "keras"}


class FolderError(ValueError):
    """The folder is not ready to publish; the message says what to fix."""


@dataclass(frozen=True)
class CheckedFolder:
    path: Path
    framework: str | None  # None: a stock config with no weights to judge by
    files: tuple[str, ...]
    size_bytes: int
    #: True when config.json did not name the framework and it was read off the weights
    inferred: bool = False


def infer_framework(files: list[str]) -> str | None:
    """The framework the weight files imply (safetensors -> pytorch, .keras/.h5 ->
    keras), or None when there are none or they disagree."""
    found = {INFER[Path(f).suffix.lower()] for f in files if Path(f).suffix.lower() in INFER}
    return found.pop() if len(found) == 1 else None


def check_folder(folder: Path) -> CheckedFolder:
    folder = Path(folder)
    if not folder.is_dir():
        raise FolderError(f"{folder} is not a folder")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FolderError(f"{folder} has no config.json; every model folder needs one")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise FolderError(f"{config_path} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise FolderError(f"{config_path} must hold a JSON object, not {type(config).__name__}")
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    framework = config.get("framework")
    inferred = "framework" not in config
    if inferred:
        framework = infer_framework(files)
    elif framework not in WEIGHTS:
        raise FolderError(f"config.json 'framework' must be one of {sorted(WEIGHTS)}, got {framework!r} "
                          "(or leave it out, as stock Hugging Face configs do, to infer it from the weights)")
    pickles = [f for f in files if Path(f).suffix.lower() in PICKLE_SUFFIXES]
    if pickles:
        raise FolderError(
            f"refusing to publish pickle-based files {pickles}: convert weights to safetensors "
            "(torch) or .keras (Keras) first"
        )
    wanted = WEIGHTS[framework] if framework and not inferred else ()
    if wanted and not any(w in files for w in wanted):
        raise FolderError(f"a {framework} model folder needs one of {list(wanted)}")
    if "README.md" not in files:
        raise FolderError(f"{folder} has no README.md model card; write one (what, data, figures)")
    if config.get("trained") is False:
        raise FolderError("config.json says trained: false; publish trained weights, not a placeholder")
    size = sum((folder / f).stat().st_size for f in files)
    return CheckedFolder(path=folder, framework=framework, files=tuple(files), size_bytes=size,
                         inferred=inferred)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m demohub.publish", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, help="local model folder (config.json, weights, README.md)")
    p.add_argument("repo_id", help="Hub repo id, e.g. my-org/cassava-resnext50")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the saved login)")
    p.add_argument("--message", default=None, help="commit message")
    p.add_argument("--dry-run", action="store_true", help="check the folder and stop")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repo_id.count("/") != 1 or not all(args.repo_id.split("/")):
        print(f"error: repo id must look like 'org/name', got {args.repo_id!r}", file=sys.stderr)
        return 2
    try:
        checked = check_folder(args.folder)
    except FolderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    framework = checked.framework or "framework not stated"
    if checked.inferred and checked.framework:
        framework += " (inferred from the weights)"
    print(f"{checked.path}: {framework}, {len(checked.files)} files, "
          f"{checked.size_bytes / 2**20:.1f} MB")
    if args.dry_run:
        print("dry run: nothing uploaded")
        return 0
    from huggingface_hub import HfApi

    api = HfApi(token=args.token)
    api.create_repo(args.repo_id, private=args.private, exist_ok=True)
    info = api.upload_folder(folder_path=str(checked.path), repo_id=args.repo_id,
                             commit_message=args.message or f"Upload {checked.path.name}")
    name = checked.path.name
    print(f"uploaded: {info.commit_url}")
    print(f"pin it with: --model {name}={args.repo_id}@{info.oid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
