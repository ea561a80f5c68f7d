"""The cassava demo's pure parts and model code, without the hub: preprocessing,
reports, the uncertain rule, Grad-CAM localisation, conversion and training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from demohub.kit import heatmap, modelcard
from demos.cassava import card, convert, dataset, folder, labels, model, reports, runtime, train
from demos.cassava.gradcam import grad_cam
from demos.cassava.heatmap_view import heatmap_image, peak_in_image
from demos.cassava.preprocess import Preprocessing, center_box, crop_box, normalize, prepare, resized_size
from support import CASSAVA_PHOTOS

PHOTOS = CASSAVA_PHOTOS
SMALL = Preprocessing(resize=64, crop_size=64, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


# --- preprocessing -----------------------------------------------------------

def test_resized_size_scales_the_shorter_side():
    assert resized_size((400, 300), 256) == (341, 256)
    assert resized_size((300, 400), 256) == (256, 341)
    assert resized_size((500, 500), 256) == (256, 256)


def test_center_box_and_crop_box_map_back_to_the_photo():
    assert center_box((341, 256), 224) == (58, 16, 282, 240)
    prep = Preprocessing(resize=256, crop_size=224)
    left, top, right, bottom = crop_box((800, 600), prep)
    # the crop is centred and covers 224/256 of the shorter side
    assert abs(top - 37.5) <= 1 and abs(bottom - 562.5) <= 1
    assert abs((left + right) / 2 - 400) <= 1 and abs((right - left) - (bottom - top)) <= 1


def test_normalize_standardises_each_channel():
    pixels = np.full((2, 3, 3), 255, dtype=np.uint8)
    x = normalize(pixels, (0.5, 0.25, 0.0), (0.5, 0.25, 2.0))
    assert x.shape == (3, 2, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, 0], [1.0, 3.0, 0.5])


def test_prepare_gives_the_configured_input_size():
    image = Image.new("RGB", (90, 60), (255, 0, 0))
    x = prepare(image, Preprocessing(resize=40, crop_size=32))
    assert x.shape == (3, 32, 32)
    assert x[0].mean() > 2 and x[1].mean() < -1  # red after ImageNet normalisation


def test_preprocessing_round_trips_through_config_and_rejects_nonsense():
    prep = Preprocessing(resize=300, crop_size=288)
    assert Preprocessing.from_config({"preprocessing": prep.to_config()}) == prep
    assert Preprocessing.from_config({}) == Preprocessing()
    with pytest.raises(ValueError):
        Preprocessing(resize=200, crop_size=224)


# --- labels and reports --------------------------------------------------------

def test_every_class_has_a_report_and_labels_round_trip():
    assert [d.code for d in labels.DISEASES] == ["CBB", "CBSD", "CGM", "CMD", "Healthy"]
    assert labels.from_config(labels.to_config()) == labels.DISEASES
    for d in labels.DISEASES:
        text = reports.details(d, 0.9, 0.57, uncertain=False, trained=True)
        assert d.display in text and "What to do" in text and "not a diagnosis" in text


def test_uncertain_and_untrained_texts_never_give_a_diagnosis():
    cmd = labels.DISEASES[3]
    uncertain = reports.details(cmd, 0.4, 0.57, uncertain=True, trained=True)
    assert "Uncertain" in uncertain and "40%" in uncertain and "57%" in uncertain
    assert "What to do" not in uncertain
    untrained = reports.details(cmd, 0.99, 0.57, uncertain=False, trained=False)
    assert "untrained" in untrained and "meaningless" in untrained and "What to do" not in untrained


# --- tiny models -----------------------------------------------------------------

def tiny_model(net: nn.Module | None = None, threshold: float = 0.57, trained: bool = True) -> runtime.CassavaModel:
    net = net or model.build("tiny_cnn", 5)
    return runtime.CassavaModel(net=net.eval().requires_grad_(False), prep=SMALL, diseases=labels.DISEASES,
                                threshold=threshold, trained=trained, architecture="tiny_cnn")


def fixed_probabilities(probs) -> nn.Module:
    """A tiny net whose output ignores the image: softmax(logits) == probs."""
    net = model.build("tiny_cnn", 5)
    with torch.no_grad():
        net.fc.weight.zero_()
        net.fc.bias.copy_(torch.log(torch.tensor(probs)))
    return net


def patch_detector(evidence_class: int = 3) -> nn.Module:
    """A tiny net whose `evidence_class` logit grows with bright pixels (> 0.5)."""
    net = model.build("tiny_cnn", 5)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        stem, conv4 = net.stem[0], net.layer4[0]
        stem.weight[0, :, 1, 1] = 1 / 3          # channel 0 = brightness ...
        stem.bias[0] = -0.5                      # ... above 0.5 (ReLU follows)
        conv4.weight[0, 0, 1, 1] = 1.0           # passed through the last block
        net.fc.weight[evidence_class, 0] = 50.0
    return net


def patch_image(left: int, top: int, size: int = 64, patch: int = 12) -> Image.Image:
    pixels = np.full((size, size, 3), 50, dtype=np.uint8)
    pixels[top:top + patch, left:left + patch] = 255
    return Image.fromarray(pixels)


def write_photo(path, image: Image.Image):
    image.save(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(1)
    config = card.make_config(trained=True, architecture="tiny_cnn", prep=SMALL)
    return folder.save(model.build("tiny_cnn", 5), out, config, "test")


# --- the uncertain rule -----------------------------------------------------------

@pytest.mark.parametrize("top, threshold, uncertain", [(0.56, 0.57, True), (0.58, 0.57, False), (0.56, 0.5, False)])
def test_uncertain_below_the_threshold(tmp_path, top, threshold, uncertain):
    rest = (1 - top) / 4
    probs = [rest, rest, rest, top, rest]
    photo = write_photo(tmp_path / "leaf.png", Image.new("RGB", (80, 64), "green"))
    result = runtime.predict(tiny_model(fixed_probabilities(probs), threshold), {"image": photo})
    assert result.uncertain is uncertain
    assert result.label == "Cassava Mosaic Disease (CMD)"
    assert result.confidence == pytest.approx(top, abs=1e-5)
    summary = result.to_json()
    assert summary["label"] == ("uncertain" if uncertain else "Cassava Mosaic Disease (CMD)")
    assert summary["code"] == "CMD" and summary["trained"] is True
    assert ("### Uncertain" in result.details) is uncertain


def test_threshold_and_flags_come_from_config(tiny_folder):
    loaded = runtime.load(tiny_folder)
    assert loaded.threshold == 0.57 and loaded.trained and loaded.prep == SMALL
    config = modelcard.read_config(tiny_folder)
    assert config["framework"] == "pytorch" and config["architecture"] == "tiny_cnn"
    assert [d["code"] for d in config["labels"]] == ["CBB", "CBSD", "CGM", "CMD", "Healthy"]


# --- Grad-CAM ---------------------------------------------------------------------------

@pytest.mark.parametrize("left, top, quadrant", [(6, 8, (0, 0)), (40, 44, (1, 1)), (44, 4, (1, 0))])
def test_gradcam_peaks_where_the_evidence_is(left, top, quadrant):
    image = patch_image(left, top)
    x = torch.from_numpy(prepare(image, SMALL))[None]
    net = patch_detector(evidence_class=3).eval().requires_grad_(False)
    explanation = grad_cam(net, model.target_layer(net), x)
    assert explanation.class_index == 3
    assert explanation.cam.ndim == 2 and explanation.cam.max() > 0
    px, py = peak_in_image(explanation.cam, image.size)
    assert (int(px >= 32), int(py >= 32)) == quadrant
    assert left - 4 <= px <= left + 16 and top - 4 <= py <= top + 16


def test_gradcam_of_a_class_without_evidence_is_empty():
    net = patch_detector(evidence_class=3)
    with torch.no_grad():
        net.fc.weight[1, 0] = -50.0              # the patch argues *against* class 1
    x = torch.from_numpy(prepare(patch_image(6, 8), SMALL))[None]
    assert grad_cam(net, model.target_layer(net), x, class_index=1).cam.max() == 0


def test_gradcam_is_the_same_with_or_without_parameter_gradients():
    torch.manual_seed(3)
    net = model.build("tiny_cnn", 5).eval()
    x = torch.randn(1, 3, 32, 32)
    with_grads = grad_cam(net, model.target_layer(net), x, class_index=2)
    net.requires_grad_(False)
    without = grad_cam(net, model.target_layer(net), x, class_index=2)
    np.testing.assert_allclose(with_grads.cam, without.cam, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(with_grads.logits, without.logits, rtol=1e-6)
    # and it matches the definition computed by hand
    acts = net.layer4(net.stem(x)).detach().requires_grad_(True)
    logit = net.fc(net.pool(acts).flatten(1))[0, 2]
    (grads,) = torch.autograd.grad(logit, acts)
    expected = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * acts).sum(1))[0].detach().numpy()
    np.testing.assert_allclose(without.cam, expected, rtol=1e-5, atol=1e-6)


def test_predict_returns_an_overlay_of_what_the_model_saw(tmp_path):
    photo = write_photo(tmp_path / "wide.png", Image.new("RGB", (2000, 1000), (30, 120, 30)))
    result = runtime.predict(tiny_model(), {"image": photo})
    assert result.heatmap.dtype == np.uint8 and result.heatmap.ndim == 3 and result.heatmap.shape[2] == 3
    assert max(result.heatmap.shape[:2]) <= 768
    assert abs(result.heatmap.shape[0] - result.heatmap.shape[1]) <= 1  # the square centre crop


def test_heatmap_image_places_the_peak_over_the_patch():
    image = patch_image(6, 8, size=64)
    cam = np.zeros((8, 8), np.float32)
    cam[1, 1] = 1.0
    overlay = heatmap_image(image, cam, SMALL)
    red = overlay[..., 0].astype(int) - overlay[..., 2]
    row, col = heatmap.peak(red)
    assert row < 32 and col < 32


def test_real_photos_predict_with_a_tiny_model(tiny_folder):
    loaded = runtime.load(tiny_folder)
    for photo in PHOTOS:
        result = runtime.predict(loaded, {"image": str(photo)})
        assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert set(result.probabilities) == {d.display for d in labels.DISEASES}
        assert max(result.heatmap.shape[:2]) <= 768


# --- placeholder --------------------------------------------------------------------------

def test_untrained_folder_is_flagged_everywhere(tmp_path):
    folder.write_untrained(tmp_path / "m", architecture="tiny_cnn", prep=SMALL)
    config = modelcard.read_config(tmp_path / "m")
    assert config["trained"] is False
    assert "Untrained placeholder" in (tmp_path / "m" / "README.md").read_text()
    assert (tmp_path / "m" / "examples").is_dir()
    photo = write_photo(tmp_path / "leaf.png", Image.new("RGB", (64, 64), "green"))
    result = runtime.predict(runtime.load(tmp_path / "m"), {"image": photo})
    assert result.trained is False and result.to_json()["trained"] is False
    assert "No diagnosis" in result.details


def test_placeholder_is_the_real_architecture(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(folder, "write_untrained", lambda d, **kw: calls.append((d, kw)))
    runtime.placeholder(tmp_path)
    assert calls == [(tmp_path, {})]
    assert card.DEFAULT_ARCHITECTURE == "resnext50_32x4d"


# --- conversion ----------------------------------------------------------------------------

class Wrapper(nn.Module):
    """The training notebook's module: the network lives at `.model`."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.model = net


def test_convert_strips_the_prefix_and_keeps_the_weights(tmp_path):
    torch.manual_seed(7)
    net = model.build("tiny_cnn", 5).eval()
    ckpt = tmp_path / "cassava.pth"
    torch.save({"model": Wrapper(net).state_dict(), "epoch": 9}, ckpt)
    assert all(k.startswith("model.") for k in torch.load(ckpt, weights_only=True)["model"])
    assert convert.main([str(ckpt), str(tmp_path / "out"), "--architecture", "tiny_cnn",
                         "--resize", "64", "--crop-size", "64"]) == 0
    loaded, config = folder.load(tmp_path / "out")
    assert config["trained"] is True and config["preprocessing"]["crop_size"] == 64
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(loaded(x), net(x))
    assert "cassava.pth" in (tmp_path / "out" / "README.md").read_text()


def test_convert_real_resnext_checkpoint(tmp_path):
    torch.manual_seed(0)
    net = model.build("resnext50_32x4d", 5)
    ckpt = tmp_path / "resnext.pth"
    torch.save({"model": Wrapper(net).state_dict()}, ckpt)
    convert.convert(ckpt, tmp_path / "out")
    loaded, config = folder.load(tmp_path / "out")
    assert config["architecture"] == "resnext50_32x4d" and config["trained"] is True
    torch.testing.assert_close(loaded.fc.weight, net.fc.weight)
    torch.testing.assert_close(loaded.layer4[2].conv3.weight, net.layer4[2].conv3.weight)


def test_convert_refuses_mismatched_or_unsafe_checkpoints(tmp_path):
    wrong_head = tmp_path / "four.pth"
    torch.save({"model": Wrapper(model.build("tiny_cnn", 4)).state_dict()}, wrong_head)
    with pytest.raises(convert.CheckpointError, match="other shapes"):
        convert.convert(wrong_head, tmp_path / "a", architecture="tiny_cnn")
    partial = {k: v for k, v in Wrapper(model.build("tiny_cnn", 5)).state_dict().items() if "fc" not in k}
    torch.save({"model": partial}, tmp_path / "partial.pth")
    with pytest.raises(convert.CheckpointError, match="missing"):
        convert.convert(tmp_path / "partial.pth", tmp_path / "b", architecture="tiny_cnn")
    # a pickled object is refused by weights_only loading, never executed
    torch.save({"model": Wrapper(model.build("tiny_cnn", 5))}, tmp_path / "pickled.pth")
    assert convert.main([str(tmp_path / "pickled.pth"), str(tmp_path / "c"), "--architecture", "tiny_cnn"]) == 2
    assert not (tmp_path / "c" / "model.safetensors").exists()


def test_strip_prefix_accepts_bare_state_dicts_only_when_consistent():
    t = torch.zeros(1)
    assert convert.strip_prefix({"model.a": t, "model.b": t}) == {"a": t, "b": t}
    assert convert.strip_prefix({"a": t}) == {"a": t}
    with pytest.raises(convert.CheckpointError):
        convert.strip_prefix({"model.a": t, "b": t})


# --- training ------------------------------------------------------------------------------------

def make_dataset(root, kaggle: bool, per_class: int = 3):
    rng = np.random.default_rng(0)
    rows = []
    for label in range(5):
        for i in range(per_class):
            pixels = rng.integers(0, 255, (24, 28, 3), dtype=np.uint8)
            pixels[..., label % 3] = 40 * label + 50
            name = f"{label}_{i}.jpg"
            if kaggle:
                (root / "train_images").mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(root / "train_images" / name)
                rows.append(f"{name},{label}")
            else:
                folder_name = labels.DISEASES[label].code if label % 2 else labels.DISEASES[label].name.lower()
                (root / folder_name).mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(root / folder_name / name)
    if kaggle:
        (root / "train.csv").write_text("image_id,label\n" + "\n".join(rows) + "\n")
    return root


@pytest.mark.parametrize("kaggle", [True, False])
def test_dataset_layouts_and_split(tmp_path, kaggle):
    samples = dataset.find_samples(make_dataset(tmp_path, kaggle))
    assert len(samples) == 15 and sorted({s.label for s in samples}) == [0, 1, 2, 3, 4]
    assert all(s.path.is_file() for s in samples)
    train_set, val_set = dataset.split(samples, 0.3, seed=1)
    assert len(val_set) == 5 and {s.label for s in val_set} == {0, 1, 2, 3, 4}
    assert not {s.path for s in train_set} & {s.path for s in val_set}


def test_class_folder_names():
    assert dataset.class_index("cassava_mosaic_disease") == 3
    assert dataset.class_index("CBSD") == 1 and dataset.class_index("4") == 4
    assert dataset.class_index("weeds") is None


@pytest.mark.parametrize("kaggle", [True, False])
def test_train_a_few_steps_writes_a_loadable_folder(tmp_path, kaggle):
    data = make_dataset(tmp_path / "data", kaggle)
    assert train.main([str(data), str(tmp_path / "out"), "--architecture", "tiny_cnn", "--resize", "24",
                       "--crop-size", "20", "--max-steps", "3", "--batch-size", "4", "--no-pretrained"]) == 0
    loaded = runtime.load(tmp_path / "out")
    assert loaded.trained and loaded.prep.crop_size == 20
    card_text = (tmp_path / "out" / "README.md").read_text()
    assert "validation accuracy" in card_text and "| steps | 3 |" in card_text


def test_training_falls_back_to_scratch_when_imagenet_weights_fail(monkeypatch, capsys):
    real_build = model.build

    def offline(architecture, num_classes, pretrained=False):
        if pretrained:
            raise OSError("no network")
        return real_build("tiny_cnn", num_classes)

    monkeypatch.setattr(model, "build", offline)
    net, start = train.starting_network("resnext50_32x4d", pretrained=True)
    assert start == "random initialisation" and isinstance(net, model.TinyCNN)
    assert "no network" in capsys.readouterr().err


def test_hub_side_modules_do_not_import_torch():
    import subprocess
    import sys

    from support import PROJECT_ROOT

    code = ("import sys\n"
            "import demos.cassava, demos.cassava.preprocess, demos.cassava.reports, demos.cassava.card\n"
            "import demos.cassava.labels, demos.cassava.dataset, demos.cassava.heatmap_view\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, check=True, timeout=60)
