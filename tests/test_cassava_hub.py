"""The cassava demo through a real hub process, as an API client sees it."""

from __future__ import annotations

import numpy as np
import pytest
from gradio_client import handle_file
from PIL import Image

from demos.cassava import card, folder, model
from demos.cassava.preprocess import Preprocessing
from support import CASSAVA_PHOTOS, mapped_framework_libs, running_hub

PHOTOS = CASSAVA_PHOTOS


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("cassava-tiny")
    config = card.make_config(trained=True, architecture="tiny_cnn", prep=Preprocessing(resize=72, crop_size=64))
    return folder.save(model.build("tiny_cnn", 5), out, config, "test")


def test_prediction_through_the_hub(tiny_folder, tmp_path):
    with running_hub("--only", "cassava", "--model", f"cassava={tiny_folder}") as hub:
        client = hub.client()
        api = client.view_api(return_format="dict", print_info=False)
        assert set(api["named_endpoints"]) == {"/cassava"}
        assert not api.get("unnamed_endpoints")

        label, heat, verdict, summary = client.predict(handle_file(str(PHOTOS[0])), api_name="/cassava")
        assert summary["trained"] is True and summary["threshold"] == 0.57
        assert set(summary["probabilities"]) == {
            "Cassava Bacterial Blight (CBB)", "Cassava Brown Streak Disease (CBSD)",
            "Cassava Green Mottle (CGM)", "Cassava Mosaic Disease (CMD)", "Healthy"}
        assert sum(summary["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
        assert summary["label"] in ("uncertain", summary["top_class"])
        assert len(label["confidences"]) == 5
        with Image.open(heat) as im:
            assert max(im.size) <= 768 and im.mode == "RGB"
        assert "Untrained" not in verdict and ("Uncertain" in verdict or "What to do" in verdict)

        bad = tmp_path / "notes.jpg"
        bad.write_text("not a photo")
        with pytest.raises(Exception, match="not an image we can read"):
            client.predict(handle_file(str(bad)), api_name="/cassava")
        assert mapped_framework_libs(hub.pid) == set()


def test_no_model_configured_serves_a_flagged_placeholder(tmp_path):
    empty_models = tmp_path / "models"
    empty_models.mkdir()
    with running_hub("--only", "cassava", "--models-dir", str(empty_models)) as hub:
        label, heat, verdict, summary = hub.client().predict(handle_file(str(PHOTOS[0])), api_name="/cassava")
        assert summary["trained"] is False and summary["architecture"] == "resnext50_32x4d"
        assert "Untrained weights" in verdict and "No diagnosis" in verdict
        assert np.asarray(Image.open(heat)).shape[2] == 3
        assert mapped_framework_libs(hub.pid) == set()
