"""The durian worker: load the Keras model, answer predictions, or build an
untrained placeholder. Only the hub's worker process imports this module."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from demohub.device import device_name
from demohub.kit import cache, classify, heatmap, images, modelcard
from demohub.errors import InputError

from demos.durian import folder, gradcam, tfenv
from demos.durian.breeds import describe
from demos.durian.gradcam import Explainer
from demos.durian.model import DEFAULT_ARCHITECTURE, architecture, build
from demos.durian.model import load as load_keras
from demos.durian.preprocess import Preprocessing, to_batch

import keras  # after tfenv (imported above) has set TensorFlow's log level

#: The heatmap travels back to the hub as a raw uint8 array; this keeps it near 1 MB.
HEATMAP_MAX_SIDE = 768
#: A cached graph is only as good as the code that traced it.
GRADCAM_SOURCE = Path(gradcam.__file__).read_bytes()


@dataclass(frozen=True)
class DurianModel:
    config: dict
    labels: list[str]
    prep: Preprocessing
    threshold: float
    trained: bool
    explain: Explainer
    #: the Grad-CAM graph came from the cache (no Keras model was built)
    restored: bool = False


def use_device() -> None:
    """Only the device the hub chose; on a GPU, memory grows as needed instead of
    TensorFlow taking the whole card, so workers can share it."""
    chosen = device_name()
    gpus = tfenv.tf.config.list_physical_devices("GPU")
    index = int(chosen.partition(":")[2] or 0)
    mine = gpus[index:index + 1] if chosen.startswith("cuda") else []
    try:
        tfenv.tf.config.set_visible_devices(mine, "GPU")
        for gpu in mine:
            tfenv.tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:
        pass  # TensorFlow already ran an op in this process (tests)


def load(model_dir: Path) -> DurianModel:
    tfenv.configure()
    use_device()
    config = modelcard.read_config(model_dir)
    if config.get("framework", "keras") != "keras":
        raise ValueError(f"config.json framework is {config.get('framework')!r}; this demo runs Keras models")
    labels = list(config["labels"])
    prep = Preprocessing.from_config(config)
    explain, restored = explainer(Path(model_dir), config, labels, prep)
    # Run the graph once now (graph optimisation, kernels), so the first person to ask does not wait.
    explain(np.zeros((1, *prep.input_shape), dtype=np.float32))
    return DurianModel(config=config, labels=labels, prep=prep,
                       threshold=float(config.get("uncertain_threshold", folder.DEFAULT_THRESHOLD)),
                       trained=bool(config.get("trained", True)), explain=explain, restored=restored)


def explainer(model_dir: Path, config: dict, labels: list[str], prep: Preprocessing) -> tuple[Explainer, bool]:
    """The Grad-CAM function: restored from this demo's cache when an earlier worker
    of the same model stored it (True), else traced from the Keras model and stored."""
    weights = model_dir / config.get("weights_file", "model.keras")
    place = cache.folder("durian")
    if place is None or not weights.is_file():  # (a missing file: the loader's own message says so)
        return trace(weights, config, labels, prep), False
    entry = place / cache.key(json.dumps(config, sort_keys=True), cache.file_identity(weights),
                              tfenv.tf.__version__, keras.__version__, device_name(), GRADCAM_SOURCE)
    if entry.is_dir():
        try:
            return Explainer.restore(entry), True
        except Exception as exc:  # noqa: BLE001 - a damaged entry is rebuilt, never fatal
            print(f"durian: ignoring the cached graph {entry.name} ({type(exc).__name__}: {exc})",
                  file=sys.stderr)
            shutil.rmtree(entry, ignore_errors=True)
    explain = trace(weights, config, labels, prep)
    try:
        cache.store(place, entry.name, explain.save)
    except Exception as exc:  # noqa: BLE001 - a full disk costs the next load time, not this one
        print(f"durian: could not cache the traced graph ({type(exc).__name__}: {exc})", file=sys.stderr)
    return explain, False


def trace(weights: Path, config: dict, labels: list[str], prep: Preprocessing) -> Explainer:
    keras_model = load_keras(weights)
    if keras_model.outputs[0].shape[-1] != len(labels):
        raise ValueError(f"the model has {keras_model.outputs[0].shape[-1]} outputs but config.json "
                         f"lists {len(labels)} labels")
    if tuple(keras_model.inputs[0].shape[1:]) != prep.input_shape:
        raise ValueError(f"the model expects inputs of shape {tuple(keras_model.inputs[0].shape[1:])} but "
                         f"config.json preprocessing.size gives {prep.input_shape}")
    layer = config.get("last_conv_layer") or architecture(config["architecture"]).last_conv_layer
    return Explainer.trace(keras_model, layer)


def verdict_line(label: str, uncertain: bool, threshold: float, descriptions: dict) -> str:
    """The breed's look and taste, or why we will not name one."""
    if uncertain:
        return (f"Not sure: no breed reaches {threshold:.0%}. The closest is {label}; try a clearer "
                "photo of the whole fruit or its flesh.")
    return describe(label, descriptions)


def predict(model: DurianModel, request: dict) -> classify.ImageClassification:
    if not isinstance(request, dict) or not request.get("image"):
        raise InputError("no image was received; upload a durian photo")
    image = images.load_image(request["image"])
    explanation = model.explain(to_batch(image, model.prep))
    # bilinear and in place, as cassava does: bicubic on a copy cost several ms a request, unseen under the map
    image.thumbnail((HEATMAP_MAX_SIDE, HEATMAP_MAX_SIDE), Image.Resampling.BILINEAR)
    decision = classify.decide(explanation.probabilities, model.labels, model.threshold)
    details = verdict_line(decision.label, decision.uncertain, model.threshold,
                           model.config.get("descriptions", {}))
    return classify.build_result(
        explanation.probabilities, model.labels, model.threshold, model.trained,
        heatmap=heatmap.overlay(image, explanation.cam), details=details,
        architecture=model.config.get("architecture"),
    )


def placeholder(model_dir: Path) -> None:
    """An untrained, seeded model of the real architecture, marked trained=false."""
    tfenv.configure()
    arch = architecture(DEFAULT_ARCHITECTURE)
    prep = Preprocessing()
    keras_model = build(arch.name, prep.input_shape, n_classes=4, weights=None, seed=0)
    config = folder.make_config(arch.name, arch.last_conv_layer, trained=False, prep=prep)
    folder.write(Path(model_dir), keras_model, config,
                 "## Status\n\nRandomly initialised (seed 0), never trained: the hub builds this "
                 "placeholder when no trained durian model is configured, to show the interface "
                 "end to end. Train one with `python -m demos.durian.train`.\n")
