"""Write and read a cassava model folder: config.json + model.safetensors +
README.md + examples/. Weights never go through pickle."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from demohub.kit import modelcard
from demos.cassava import card, model


def save(net: nn.Module, model_dir: Path, config: dict, provenance: str, metrics: dict | None = None) -> Path:
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(model_dir / card.WEIGHTS_FILE), metadata={"format": "pt"})
    card.write_card(model_dir, config, provenance, metrics)
    return model_dir


def load(model_dir: Path) -> tuple[nn.Module, dict]:
    """The network in eval mode with gradients off, and its config."""
    config = modelcard.read_config(model_dir)
    if config.get("framework", "pytorch") != "pytorch":
        raise ValueError(f"{model_dir} holds a {config['framework']} model; this demo runs PyTorch")
    weights = Path(model_dir) / config.get("weights", card.WEIGHTS_FILE)
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing; the model folder needs its weights")
    # Built on the meta device: no time spent on a random init the weights replace.
    with torch.device("meta"):
        net = model.build(config.get("architecture", card.DEFAULT_ARCHITECTURE), len(config["labels"]))
    net.load_state_dict(load_file(str(weights)), strict=True, assign=True)
    net.eval().requires_grad_(False)
    return net, config


def write_untrained(model_dir: Path, architecture: str = card.DEFAULT_ARCHITECTURE, seed: int = 0,
                    **config_extra) -> Path:
    """A random-init folder marked "trained": false (the hub's placeholder)."""
    torch.manual_seed(seed)
    config = card.make_config(trained=False, architecture=architecture, **config_extra)
    net = model.build(architecture, config["num_classes"])
    return save(net, model_dir, config, provenance=f"untrained placeholder, random init (seed {seed}).")
