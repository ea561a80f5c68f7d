"""config.json and README.md of a cassava model folder (no torch here).

Everything the runtime needs to rebuild the model sits in config.json: the
architecture, the labels, the preprocessing and the "uncertain" threshold.
"""

from __future__ import annotations

from pathlib import Path

from demohub.kit import modelcard
from demos.cassava import labels
from demos.cassava.preprocess import Preprocessing

DEFAULT_ARCHITECTURE = "resnext50_32x4d"
DEFAULT_THRESHOLD = 0.57
WEIGHTS_FILE = "model.safetensors"


def make_config(trained: bool, architecture: str = DEFAULT_ARCHITECTURE,
                prep: Preprocessing | None = None, threshold: float = DEFAULT_THRESHOLD,
                **extra) -> dict:
    return {
        "framework": "pytorch",
        "architecture": architecture,
        "num_classes": len(labels.DISEASES),
        "labels": labels.to_config(),
        "preprocessing": (prep or Preprocessing()).to_config(),
        "uncertain_threshold": threshold,
        "trained": trained,
        "weights": WEIGHTS_FILE,
        **extra,
    }


def readme(config: dict, provenance: str, metrics: dict | None = None) -> str:
    """A short model card: what the model is, where it came from, how good it is."""
    p = config["preprocessing"]
    classes = "\n".join(f"{i}. {d['name']} ({d['code']})" for i, d in enumerate(config["labels"]))
    lines = [
        "---", "library_name: pytorch", "tags: [image-classification, cassava, plant-disease]", "---", "",
        f"# Cassava leaf disease classifier ({config['architecture']})", "",
        ("**Untrained placeholder: random weights, predictions are meaningless.**\n"
         if not config["trained"] else ""),
        f"Provenance: {provenance}", "",
        "## Classes", classes, "",
        "## Preprocessing",
        f"Resize the shorter side to {p['resize']} px (bilinear), centre-crop {p['crop_size']} px, "
        f"scale to [0, 1], normalise with mean {p['mean']} and std {p['std']}.", "",
        f"Answers \"uncertain\" when the top probability is below {config['uncertain_threshold']}.", "",
    ]
    if metrics:
        lines += ["## Validation", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in metrics.items()]
        lines.append("")
    lines += ["## Limitations",
              "Trained on field photos from Uganda (Kaggle 2020 competition); other regions, "
              "varieties or camera conditions may behave differently. Not a substitute for an "
              "extension officer."]
    return "\n".join(lines) + "\n"


def write_card(model_dir: Path, config: dict, provenance: str, metrics: dict | None = None) -> None:
    model_dir = Path(model_dir)
    (model_dir / "examples").mkdir(parents=True, exist_ok=True)
    modelcard.write_config(model_dir, config)
    (model_dir / "README.md").write_text(readme(config, provenance, metrics), encoding="utf-8")
