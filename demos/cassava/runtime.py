"""Inside the worker: load a cassava folder, classify a photo, explain it.

Only this module (and what it imports) touches torch; the hub process never
imports it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from demohub.device import torch_device
from demohub.errors import InputError
from demohub.kit import classify, images
from demos.cassava import card, folder, labels, reports
from demos.cassava.gradcam import grad_cam
from demos.cassava.heatmap_view import heatmap_image
from demos.cassava.model import target_layer
from demos.cassava.preprocess import Preprocessing, prepare


@dataclass
class CassavaModel:
    net: nn.Module
    prep: Preprocessing
    diseases: tuple[labels.Disease, ...]
    threshold: float
    trained: bool
    architecture: str
    device: torch.device = torch.device("cpu")


def _set_threads() -> None:
    threads = os.environ.get("OMP_NUM_THREADS", "").strip()
    if threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))


def load(model_dir: Path) -> CassavaModel:
    _set_threads()
    net, config = folder.load(Path(model_dir))
    device = torch_device()
    return CassavaModel(
        net=net.to(device),
        prep=Preprocessing.from_config(config),
        diseases=labels.from_config(config["labels"]),
        threshold=float(config.get("uncertain_threshold", card.DEFAULT_THRESHOLD)),
        trained=bool(config.get("trained", False)),
        architecture=config.get("architecture", card.DEFAULT_ARCHITECTURE),
        device=device,
    )


def placeholder(model_dir: Path) -> None:
    """Untrained resnext50_32x4d, seeded; the UI flags it as meaningless."""
    folder.write_untrained(Path(model_dir))


def predict(model: CassavaModel, request: dict) -> classify.ImageClassification:
    path = (request or {}).get("image")
    if not path:
        raise InputError("no image was received; upload a photo of a cassava leaf")
    image = images.load_image(path)
    x = torch.from_numpy(prepare(image, model.prep))[None].to(model.device)
    explanation = grad_cam(model.net, target_layer(model.net), x)
    probs = classify.softmax(explanation.logits)
    names = [d.display for d in model.diseases]
    decision = classify.decide(probs, names, model.threshold)
    disease = model.diseases[names.index(decision.label)]
    return classify.build_result(
        probs, names, model.threshold, model.trained,
        heatmap=heatmap_image(image, explanation.cam, model.prep),
        details=reports.details(disease, decision.confidence, model.threshold, decision.uncertain, model.trained),
        code=disease.code,
        architecture=model.architecture,
    )
