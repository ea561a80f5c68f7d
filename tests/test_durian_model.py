"""Durian demo, in-process: preprocessing, model files, Grad-CAM, placeholder."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support import DURIAN_PHOTO

from demohub.kit import cache, heatmap, modelcard
from demos.durian import breeds, folder, runtime
from demos.durian.gradcam import Explainer
from demos.durian import model as model_files
from demos.durian.model import build, load, without_initialisers
from demos.durian.preprocess import Preprocessing, to_batch

import keras
import tensorflow as tf

PHOTO = DURIAN_PHOTO
TINY_SIZE = 64


def write_tiny_folder(target: Path, weights_file: str = "model.keras", seed: int = 1, **config_extra) -> Path:
    """A complete model folder with the tiny test architecture (trained=true)."""
    prep = Preprocessing(height=TINY_SIZE, width=TINY_SIZE)
    model = build("tiny_cnn", prep.input_shape, n_classes=4, seed=seed)
    config = folder.make_config("tiny_cnn", "last_conv", trained=True, prep=prep,
                                weights_file=weights_file, **config_extra)
    return folder.write(target, model, config, "## Test model\n\nTiny CNN for tests.\n")


# -- preprocessing ---------------------------------------------------------------------------


def test_preprocessing_reads_size_and_scale_from_config():
    prep = Preprocessing.from_config({"preprocessing": {"size": [32, 48], "scale": 2 / 255, "offset": -1}})
    batch = to_batch(Image.new("RGB", (300, 100), (255, 0, 128)), prep)
    assert batch.shape == (1, 32, 48, 3) and batch.dtype == np.float32
    assert np.allclose(batch[0, 0, 0], [1.0, -1.0, 128 * 2 / 255 - 1], atol=1e-5)


def test_default_preprocessing_is_224_in_unit_range():
    prep = Preprocessing.from_config({})
    batch = to_batch(Image.new("L", (10, 10), 255), prep)
    assert batch.shape == (1, 224, 224, 3)
    assert batch.min() >= 0.0 and batch.max() == pytest.approx(1.0)


def test_preprocessing_rejects_unknown_resample():
    with pytest.raises(ValueError, match="resample"):
        Preprocessing.from_config({"preprocessing": {"resample": "magic"}})


def test_breed_aliases_and_descriptions():
    assert breeds.canonical("musang_king") == "Mao Shan Wang"
    assert breeds.canonical("Golden Phoenix") == "Jin Feng (Golden Phoenix)"
    assert all(breeds.describe(label) for label in breeds.LABELS)


# -- model files -----------------------------------------------------------------------------


@pytest.mark.parametrize("weights_file", ["model.keras", "model.h5"])
def test_both_file_formats_load_and_predict(tmp_path, weights_file):
    target = write_tiny_folder(tmp_path / "m", weights_file=weights_file)
    assert (target / weights_file).is_file()
    original = build("tiny_cnn", (TINY_SIZE, TINY_SIZE, 3), n_classes=4, seed=1)
    x = np.random.default_rng(0).random((1, TINY_SIZE, TINY_SIZE, 3), dtype=np.float32)
    np.testing.assert_allclose(load(target / weights_file)(x).numpy(), original(x).numpy(), atol=1e-5)

    model = runtime.load(target)
    result = runtime.predict(model, {"image": str(PHOTO)})
    assert set(result.probabilities) == set(breeds.LABELS)
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert result.trained is True
    assert result.heatmap.dtype == np.uint8 and result.heatmap.ndim == 3
    assert max(result.heatmap.shape[:2]) <= runtime.HEATMAP_MAX_SIDE


def test_legacy_h5_saved_by_keras_model_save(tmp_path):
    """Older Keras apps called model.save("x.h5"); that full-model file loads as is."""
    model = build("tiny_cnn", (TINY_SIZE, TINY_SIZE, 3), n_classes=4, seed=2)
    model.save(tmp_path / "x.h5")
    assert load(tmp_path / "x.h5").count_params() == model.count_params()


def test_initialisers_become_zeros_and_nothing_else_changes():
    glorot = {"module": "keras.initializers", "class_name": "GlorotUniform", "config": {"seed": None},
              "registered_name": None}
    config = {"class_name": "Functional", "config": {"layers": [
        {"class_name": "Conv2D", "config": {"filters": 8, "kernel_initializer": glorot,
                                            "bias_initializer": "zeros", "name": "initializer_free"}},
        {"class_name": "BatchNormalization", "config": {"gamma_initializer": glorot, "momentum": 0.99}},
    ]}}
    out = without_initialisers(config)
    conv, norm = out["config"]["layers"]
    assert conv["config"]["kernel_initializer"]["class_name"] == "Zeros"
    assert conv["config"]["bias_initializer"] == "zeros"  # a name, not a serialised object: kept
    assert conv["config"]["filters"] == 8 and conv["config"]["name"] == "initializer_free"
    assert norm["config"]["gamma_initializer"]["class_name"] == "Zeros" and norm["config"]["momentum"] == 0.99
    assert config["config"]["layers"][0]["config"]["kernel_initializer"] is glorot  # input untouched


def rewrite_archive(source: Path, target: Path, replace: dict[str, bytes],
                    compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", compression) as new:
        for name in old.namelist():
            new.writestr(name, replace.pop(name, None) or old.read(name))
        for name, data in replace.items():
            new.writestr(name, data)
    return target


def test_weights_that_do_not_fit_the_model_fail_the_load(tmp_path):
    """Variables start as zeros, so a weights file that does not cover them must fail loudly."""
    four = write_tiny_folder(tmp_path / "four") / "model.keras"
    three = tmp_path / "three.keras"
    build("tiny_cnn", (TINY_SIZE, TINY_SIZE, 3), n_classes=3, seed=1).save(three)
    with zipfile.ZipFile(three) as other:
        weights = other.read("model.weights.h5")
    mixed = rewrite_archive(four, tmp_path / "mixed.keras", {"model.weights.h5": weights})
    with pytest.raises(ValueError):
        load(mixed)


def test_a_zip_bomb_weights_member_is_refused_before_it_is_unpacked(tmp_path, monkeypatch):
    monkeypatch.setattr(model_files, "BOMB_FLOOR_BYTES", 1 << 20)
    good = write_tiny_folder(tmp_path / "m") / "model.keras"
    bomb = rewrite_archive(good, tmp_path / "bomb.keras", {"model.weights.h5": bytes(8 << 20)},
                           compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(ValueError, match="zip bomb"):
        load(bomb)


def test_an_archive_with_assets_loads_through_keras(tmp_path):
    good = write_tiny_folder(tmp_path / "m") / "model.keras"
    with_assets = rewrite_archive(good, tmp_path / "assets.keras", {"assets/notes.txt": b"vocabulary"})
    x = np.random.default_rng(0).random((1, TINY_SIZE, TINY_SIZE, 3), dtype=np.float32)
    np.testing.assert_allclose(load(with_assets)(x).numpy(), load(good)(x).numpy(), atol=1e-6)


def test_unknown_model_file_type_is_refused(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(ValueError, match=".keras or .h5"):
        load(tmp_path / "model.pt")


@pytest.mark.parametrize("cached", [False, True], ids=["no cache", "in a hub with a cache"])
def test_label_count_must_match_model(tmp_path, monkeypatch, cached):
    if cached:
        monkeypatch.setenv(cache.ENV, str(tmp_path / "hub-cache"))
    target = write_tiny_folder(tmp_path / "m")
    config = modelcard.read_config(target)
    config["labels"] = config["labels"][:3]
    modelcard.write_config(target, config)
    with pytest.raises(ValueError, match="3 labels"):
        runtime.load(target)
    assert not (tmp_path / "hub-cache").exists() or not list((tmp_path / "hub-cache").rglob("*.pb"))


# -- Grad-CAM --------------------------------------------------------------------------------


def bright_patch_model(size: int = 32) -> keras.Model:
    """Class 0's evidence is brightness: a 1x1 conv fires where pixels are bright."""
    inputs = keras.Input((size, size, 3))
    conv = keras.layers.Conv2D(1, 1, activation="relu", name="last_conv")
    features = conv(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    dense = keras.layers.Dense(2, activation="softmax")
    outputs = dense(pooled)
    conv.set_weights([np.full((1, 1, 3, 1), 1 / 3, np.float32), np.array([-0.5], np.float32)])
    dense.set_weights([np.array([[10.0, -10.0]], np.float32), np.zeros(2, np.float32)])
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("corner", [(0, 0), (24, 20)])
def test_gradcam_peaks_where_the_evidence_is(corner):
    size = 32
    image = np.zeros((1, size, size, 3), np.float32)
    r, c = corner
    image[0, r:r + 8, c:c + 8] = 1.0
    explanation = Explainer.trace(bright_patch_model(size), "last_conv")(image)
    assert int(np.argmax(explanation.probabilities)) == 0
    assert explanation.cam.shape == (size, size)
    row, col = heatmap.peak(explanation.cam)
    assert r <= row < r + 8 and c <= col < c + 8
    outside = explanation.cam.copy()
    outside[r:r + 8, c:c + 8] = 0
    assert outside.max() == 0.0


def test_gradcam_peak_survives_the_overlay_resize():
    image = np.zeros((1, 32, 32, 3), np.float32)
    image[0, :8, :8] = 1.0
    cam = Explainer.trace(bright_patch_model(), "last_conv")(image).cam
    photo = Image.new("RGB", (640, 640))
    blended = heatmap.overlay(photo, cam).astype(int)
    redness = blended[..., 0] - blended[..., 2]
    row, col = heatmap.peak(redness)
    assert row < 160 and col < 160


def tape_over_everything(model: keras.Model, layer: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM the plain way: one tape over the whole model, every variable watched."""
    head = model.layers[-1]
    both = keras.Model(model.inputs, [model.get_layer(layer).output, head.input])
    with tf.GradientTape() as tape:
        features, pooled = both([x], training=False)
        tape.watch(features)
        logits = keras.ops.matmul(pooled, head.kernel) + head.bias
        probs = tf.nn.softmax(logits)
        score = tf.gather(logits[0], tf.argmax(probs[0]))
    grads = tape.gradient(score, features)
    cam = tf.nn.relu(tf.reduce_sum(features * tf.reduce_mean(grads, axis=(1, 2), keepdims=True), -1))[0]
    return probs[0].numpy(), cam.numpy()


def skip_model(size: int = 32) -> keras.Model:
    """A path from the input to the output that bypasses the Grad-CAM layer."""
    inputs = keras.Input((size, size, 3))
    features = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="last_conv")(inputs)
    pooled = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling2D()(features),
                                         keras.layers.GlobalAveragePooling2D()(inputs)])
    outputs = keras.layers.Dense(3, activation="softmax")(pooled)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("make", [
    lambda: build("tiny_cnn", (TINY_SIZE, TINY_SIZE, 3), n_classes=4, seed=3),  # only the head taped
    skip_model,  # the head cannot be split off: the whole model taped
])
def test_gradcam_equals_a_tape_over_the_whole_model(make):
    model = make()
    size = model.inputs[0].shape[1]
    x = np.random.default_rng(1).random((1, size, size, 3), dtype=np.float32)
    probs, cam = tape_over_everything(model, "last_conv", x)
    explanation = Explainer.trace(model, "last_conv")(x)
    np.testing.assert_allclose(explanation.probabilities, probs, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(explanation.cam, cam, rtol=1e-4, atol=1e-6)
    assert cam.max() > 0


def test_gradcam_names_a_missing_layer():
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        Explainer.trace(bright_patch_model(), "nope")


# -- the traced graph, kept for the next worker --------------------------------------------


@pytest.fixture
def graph_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(cache.ENV, str(tmp_path / "hub-cache"))
    return tmp_path / "hub-cache" / "derived" / "durian"


def same_answer(a, b) -> bool:
    return a.probabilities == b.probabilities and np.array_equal(a.heatmap, b.heatmap)


def test_a_later_load_restores_the_traced_graph_and_answers_the_same(tmp_path, graph_cache):
    target = write_tiny_folder(tmp_path / "m")
    first = runtime.load(target)
    assert not first.restored
    [entry] = graph_cache.iterdir()
    assert (entry / "saved_model.pb").is_file()
    second = runtime.load(target)
    assert second.restored
    request = {"image": str(PHOTO)}
    assert same_answer(runtime.predict(first, request), runtime.predict(second, request))


def test_new_weights_are_never_answered_from_the_old_graph(tmp_path, graph_cache):
    target = write_tiny_folder(tmp_path / "m", seed=1)
    old = runtime.predict(runtime.load(target), {"image": str(PHOTO)})
    write_tiny_folder(target, seed=2)  # same architecture, same file size, other weights
    retrained = runtime.load(target)
    assert not retrained.restored and len(list(graph_cache.iterdir())) == 2
    new = runtime.predict(retrained, {"image": str(PHOTO)})
    assert new.probabilities != old.probabilities
    assert same_answer(runtime.predict(runtime.load(target), {"image": str(PHOTO)}), new)


def test_a_damaged_entry_is_rebuilt_not_fatal(tmp_path, graph_cache, capsys):
    target = write_tiny_folder(tmp_path / "m")
    expected = runtime.predict(runtime.load(target), {"image": str(PHOTO)})
    [entry] = graph_cache.iterdir()
    (entry / "saved_model.pb").write_bytes(b"not a graph")
    again = runtime.load(target)
    assert not again.restored and "ignoring the cached graph" in capsys.readouterr().err
    assert same_answer(runtime.predict(again, {"image": str(PHOTO)}), expected)
    assert runtime.load(target).restored  # stored whole again


def test_a_missing_weights_file_is_named_with_or_without_a_cache(tmp_path, graph_cache):
    target = write_tiny_folder(tmp_path / "m")
    (target / "model.keras").unlink()
    with pytest.raises(FileNotFoundError, match="the model file .*model.keras is missing"):
        runtime.load(target)


def test_outside_a_hub_nothing_is_cached(tmp_path, monkeypatch):
    monkeypatch.delenv(cache.ENV, raising=False)
    target = write_tiny_folder(tmp_path / "m")
    assert not runtime.load(target).restored and not runtime.load(target).restored
    assert sorted(p.name for p in target.iterdir()) == ["README.md", "config.json", "examples", "model.keras"]


# -- the untrained placeholder ---------------------------------------------------------------


def test_placeholder_is_the_real_architecture_and_says_untrained(tmp_path):
    runtime.placeholder(tmp_path)
    config = modelcard.read_config(tmp_path)
    assert config["trained"] is False
    assert config["architecture"] == "xception"
    assert config["labels"] == list(breeds.LABELS)
    assert config["preprocessing"]["size"] == [224, 224]
    assert (tmp_path / "model.keras").is_file() and (tmp_path / "examples").is_dir()
    assert "UNTRAINED" in (tmp_path / "README.md").read_text()

    result = runtime.predict(runtime.load(tmp_path), {"image": str(PHOTO)})
    assert result.trained is False
    assert result.to_json()["trained"] is False


def test_input_size_must_match_config(tmp_path):
    target = write_tiny_folder(tmp_path / "m")
    config = modelcard.read_config(target)
    config["preprocessing"]["size"] = [128, 128]
    modelcard.write_config(target, config)
    with pytest.raises(ValueError, match="preprocessing.size"):
        runtime.load(target)
