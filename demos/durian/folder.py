"""The model folder's layout: config.json, the Keras file, a README model card
and examples/. Written by `train.py` and by the untrained placeholder alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from demohub.kit import modelcard

from demos.durian.breeds import DESCRIPTIONS, LABELS, describe
from demos.durian.preprocess import Preprocessing

DEFAULT_THRESHOLD = 0.5


def make_config(architecture: str, last_conv_layer: str, *, trained: bool,
                labels: tuple[str, ...] = LABELS, prep: Preprocessing = Preprocessing(),
                threshold: float = DEFAULT_THRESHOLD, weights_file: str = "model.keras",
                **extra: Any) -> dict[str, Any]:
    return {
        "framework": "keras",
        "architecture": architecture,
        "labels": list(labels),
        "descriptions": {label: describe(label, DESCRIPTIONS) for label in labels},
        "preprocessing": prep.to_config(),
        "uncertain_threshold": threshold,
        "last_conv_layer": last_conv_layer,
        "trained": trained,
        "weights_file": weights_file,
        **extra,
    }


def model_card(config: dict[str, Any], body: str) -> str:
    """README.md: what the model is, how to feed it, and how well it does."""
    prep = config["preprocessing"]
    labels = "\n".join(f"- **{label}**: {config['descriptions'].get(label, '')}" for label in config["labels"])
    status = "trained" if config["trained"] else "UNTRAINED placeholder: predictions are meaningless"
    return (
        f"# Durian breed classifier ({config['architecture']}, {status})\n\n"
        "A photo of a durian -> one of four breeds, with a Grad-CAM heatmap on layer "
        f"`{config['last_conv_layer']}`.\n\n"
        f"- Framework: Keras 3 (`{config['weights_file']}`)\n"
        f"- Input: RGB resized to {prep['size'][0]}x{prep['size'][1]}, pixel * {prep['scale']:.6g} + "
        f"{prep['offset']:g}\n"
        f"- Below {config['uncertain_threshold']:.0%} top-class probability the demo answers \"uncertain\".\n\n"
        f"## Breeds\n\n{labels}\n\n{body.strip()}\n"
    )


def write(target: Path, model, config: dict[str, Any], card_body: str) -> Path:
    """Save model + config + card into `target` (created if needed)."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    (target / "examples").mkdir(exist_ok=True)
    model.save(target / config["weights_file"])
    modelcard.write_config(target, config)
    (target / "README.md").write_text(model_card(config, card_body), encoding="utf-8")
    return target
