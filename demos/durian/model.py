"""Build, save and load the durian classifier (Keras 3).

One flat functional model: a backbone (Xception, DenseNet121, or a tiny CNN
for tests) whose last convolutional layer keeps its name, so Grad-CAM can
reach it, and a small head: global average pooling, Dense(32), dropout and a
softmax over the breeds.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demos.durian import tfenv  # noqa: F401 - sets TensorFlow's log level first

import keras


@dataclass(frozen=True)
class Architecture:
    name: str
    last_conv_layer: str
    imagenet: bool


ARCHITECTURES: dict[str, Architecture] = {
    "xception": Architecture("xception", "block14_sepconv2_act", imagenet=True),
    "densenet121": Architecture("densenet121", "relu", imagenet=True),
    "tiny_cnn": Architecture("tiny_cnn", "last_conv", imagenet=False),
}
DEFAULT_ARCHITECTURE = "xception"
HEAD_PREFIX = "head_"


def architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; choose one of {sorted(ARCHITECTURES)}") from None


def _backbone(name: str, inputs, weights: str | None):
    """The backbone's last convolutional feature map, built on `inputs`."""
    if name == "tiny_cnn":
        x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv1")(inputs)
        return keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="last_conv")(x)
    factory = {"xception": keras.applications.Xception, "densenet121": keras.applications.DenseNet121}[name]
    return factory(include_top=False, weights=weights, input_tensor=inputs).output


def build(name: str, input_shape: tuple[int, int, int], n_classes: int, *,
          weights: str | None = None, dropout: float = 0.3, seed: int | None = 0) -> keras.Model:
    """A fresh classifier; `weights="imagenet"` downloads the backbone's weights."""
    arch = architecture(name)
    if weights and not arch.imagenet:
        raise ValueError(f"{name} has no pretrained weights")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=input_shape, name="image")
    features = _backbone(name, inputs, weights)
    x = keras.layers.GlobalAveragePooling2D(name=f"{HEAD_PREFIX}pool")(features)
    x = keras.layers.Dense(32, activation="relu", name=f"{HEAD_PREFIX}dense")(x)
    x = keras.layers.Dropout(dropout, name=f"{HEAD_PREFIX}dropout")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name=f"{HEAD_PREFIX}probs")(x)
    return keras.Model(inputs, outputs, name=f"durian_{name}")


def freeze_backbone(model: keras.Model, frozen: bool = True) -> None:
    """Train only the head (fine-tuning on top of ImageNet features)."""
    for layer in model.layers:
        if not layer.name.startswith(HEAD_PREFIX):
            layer.trainable = not frozen


#: What Keras writes into a `.keras` archive of a model without assets.
KERAS_ARCHIVE_MEMBERS = {"metadata.json", "config.json", "model.weights.h5"}
#: A member over 256 MiB that claims 100 times its stored size is a zip bomb (Keras's own rule).
BOMB_FLOOR_BYTES, MAX_EXPANSION = 1 << 28, 100
ZEROS = {"module": "keras.initializers", "class_name": "Zeros", "config": {}, "registered_name": None}


def load(path: str | Path) -> keras.Model:
    """A `.keras` archive (safe mode: no arbitrary code) or a legacy full-model `.h5`."""
    path = Path(path)
    if path.suffix not in (".keras", ".h5", ".hdf5"):
        raise ValueError(f"{path.name}: expected a .keras or .h5 model file")
    if not path.is_file():
        raise FileNotFoundError(f"the model file {path} is missing")
    if path.suffix == ".keras":
        with zipfile.ZipFile(path) as archive:
            if set(archive.namelist()) == KERAS_ARCHIVE_MEMBERS:
                return _load_archive(archive)
    return keras.models.load_model(path, compile=False, safe_mode=True)


def without_initialisers(config: Any) -> Any:
    """`config` with every layer's weight initialiser replaced by zeros.

    Loading fills every variable from the saved weights, so drawing ~20 M random
    numbers first is wasted (Xception: 0.25-0.3 s of a ~3 s cold load here). A weights file
    that does not fit the model still fails the load (a sub-layer Keras skips
    with a warning keeps zeros where `load_model` would leave random numbers)."""
    if isinstance(config, dict):
        return {key: ZEROS if key.endswith("_initializer") and isinstance(value, dict) and "class_name" in value
                else without_initialisers(value) for key, value in config.items()}
    if isinstance(config, list):
        return [without_initialisers(value) for value in config]
    return config


def _load_archive(archive: zipfile.ZipFile) -> keras.Model:
    """What `keras.models.load_model` does for an archive without assets, minus the random
    initialisers, with the weights read from a real file (h5py reads one faster than
    Keras's in-memory copy of it); public Keras calls only."""
    config = json.loads(archive.read(_member(archive, "config.json")))
    config["compile_config"] = None
    model = keras.saving.deserialize_keras_object(without_initialisers(config), safe_mode=True)
    with tempfile.TemporaryDirectory(prefix="durian-weights-") as folder:
        target = Path(folder) / "model.weights.h5"
        with archive.open(_member(archive, "model.weights.h5")) as source, target.open("wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
        model.load_weights(target)
    return model


def _member(archive: zipfile.ZipFile, name: str) -> zipfile.ZipInfo:
    info = archive.getinfo(name)
    if info.file_size > max(BOMB_FLOOR_BYTES, MAX_EXPANSION * info.compress_size):
        raise ValueError(f"{archive.filename}: {name} claims {info.file_size} bytes but stores "
                         f"{info.compress_size}; refusing a possible zip bomb")
    return info
