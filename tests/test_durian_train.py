"""Durian training: folder-per-class photos -> a model folder the runtime serves."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from demohub.kit import modelcard
from demos.durian import report, runtime, train

FOLDERS = {"d24": (220, 200, 90), "golden_phoenix": (240, 230, 150), "musang_king": (230, 170, 30),
           "red_prawn": (220, 100, 50)}


def make_photos(root, per_class: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for name, colour in FOLDERS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 20, (40, 48, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.jpg")


def test_train_writes_a_servable_folder(tmp_path, capsys):
    data = tmp_path / "data"
    make_photos(data / "train", per_class=4, seed=0)
    make_photos(data / "valid", per_class=2, seed=1)
    out = tmp_path / "model"
    train.main(["--data", str(data), "--out", str(out), "--architecture", "tiny_cnn", "--size", "32",
                "--epochs", "2", "--batch-size", "8", "--patience", "1"])

    config = modelcard.read_config(out)
    assert config["trained"] is True
    assert config["labels"] == ["D24", "Jin Feng (Golden Phoenix)", "Mao Shan Wang", "Red Prawn"]
    assert config["training"]["epochs"] <= 2
    card = (out / "README.md").read_text()
    assert "Validation accuracy" in card and "Confusion matrix" in card
    assert len(list((out / "examples").glob("*.jpg"))) == 4

    result = runtime.predict(runtime.load(out), {"image": str(data / "valid" / "red_prawn" / "0.jpg")})
    assert result.trained is True and set(result.probabilities) == set(config["labels"])


def test_train_and_valid_must_share_classes(tmp_path):
    make_photos(tmp_path / "train", per_class=1, seed=0)
    (tmp_path / "valid" / "d24").mkdir(parents=True)
    with pytest.raises(ValueError, match="valid/ has"):
        train.class_folders(tmp_path)


def test_imagenet_download_failure_falls_back_to_scratch(monkeypatch, capsys):
    def offline(*args, **kwargs):
        if kwargs.get("weights") == "imagenet":
            raise OSError("no network")
        return real_build(*args, **kwargs)

    real_build = train.build
    monkeypatch.setattr(train, "build", offline)
    opts = train.Options(data=None, out=None, architecture="xception", size=71)
    model, pretrained = train.initial_model(opts, train.Preprocessing(height=71, width=71), 4)
    assert pretrained is False and model.output_shape == (None, 4)
    assert "ImageNet weights unavailable" in capsys.readouterr().err


def test_validation_figures():
    v = report.Validation(labels=["a", "b"], confusion=report.confusion([0, 0, 1, 1], [0, 1, 1, 1], 2), loss=0.5)
    assert v.accuracy == 0.75 and v.recall() == {"a": 0.5, "b": 1.0}
    text = report.markdown(v, epochs=3, pretrained=False, stopped_early=True)
    assert "75.0%" in text and "| a | 1 | 1 |" in text
