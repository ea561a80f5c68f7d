"""Turn the original app's checkpoint into a cassava model folder.

    python -m demos.cassava.convert CHECKPOINT.pth OUT_DIR [--resize 256 --crop-size 224]

The training notebook saved `torch.save({"model": wrapper.state_dict()}, ...)`
where `wrapper.model` is the ResNeXt, so every key starts with "model.". The
file is read with `weights_only=True` (no unpickling of arbitrary objects);
the prefix is stripped, the keys and shapes are checked against a fresh
network, and the weights are written as safetensors.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import sys
from collections.abc import Mapping
from pathlib import Path

import torch

from demos.cassava import card, folder, labels, model
from demos.cassava.preprocess import Preprocessing

PREFIX = "model."


class CheckpointError(ValueError):
    """The checkpoint does not hold the weights this demo expects."""


def extract_state_dict(checkpoint) -> dict:
    """The tensors of `{"model": state_dict}` (or of a bare state dict)."""
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("model"), Mapping):
        checkpoint = checkpoint["model"]
    if not isinstance(checkpoint, Mapping) or not checkpoint:
        raise CheckpointError("the checkpoint holds no state dict (expected {'model': state_dict})")
    tensors = {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    if len(tensors) != len(checkpoint):
        raise CheckpointError("the state dict holds non-tensor values; is this a training checkpoint?")
    return tensors


def strip_prefix(state: dict, prefix: str = PREFIX) -> dict:
    """Drop the wrapper's attribute name; a bare state dict passes unchanged."""
    if all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    if any(k.startswith(prefix) for k in state):
        raise CheckpointError(f"only some keys start with {prefix!r}; cannot tell the wrapper's layout")
    return dict(state)


def check_keys(state: dict, expected: dict) -> None:
    """Same names and shapes as the fresh network, or a message listing the differences."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
    if wrong:
        k = wrong[0]
        problems.append(f"{len(wrong)} with other shapes (e.g. {k}: {tuple(state[k].shape)} "
                        f"vs {tuple(expected[k].shape)})")
    if problems:
        raise CheckpointError("the checkpoint does not match the architecture: " + "; ".join(problems))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert(checkpoint: Path, out_dir: Path, architecture: str = card.DEFAULT_ARCHITECTURE,
            prep: Preprocessing | None = None, threshold: float = card.DEFAULT_THRESHOLD) -> Path:
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = strip_prefix(extract_state_dict(raw))
    net = model.build(architecture, len(labels.DISEASES))
    check_keys(state, net.state_dict())
    net.load_state_dict(state, strict=True)
    config = card.make_config(trained=True, architecture=architecture, prep=prep, threshold=threshold)
    provenance = f"converted from `{Path(checkpoint).name}` (sha256 {sha256(checkpoint)[:16]}…) with demos.cassava.convert."
    return folder.save(net, out_dir, config, provenance)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--architecture", default=card.DEFAULT_ARCHITECTURE, choices=model.ARCHITECTURES)
    p.add_argument("--resize", type=int, default=256, help="shorter side before the crop (as in training)")
    p.add_argument("--crop-size", type=int, default=224, help="model input size (as in training)")
    p.add_argument("--threshold", type=float, default=card.DEFAULT_THRESHOLD)
    args = p.parse_args(argv)
    try:
        out = convert(args.checkpoint, args.out_dir, args.architecture,
                      Preprocessing(resize=args.resize, crop_size=args.crop_size), args.threshold)
    except (CheckpointError, FileNotFoundError, pickle.UnpicklingError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
