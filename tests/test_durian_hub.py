"""Durian through the real hub: the API answers in the shared image-result
shape, bad uploads are explained, and TensorFlow never enters the hub process."""

from __future__ import annotations

import pytest
from gradio_client import handle_file

from support import DURIAN_PHOTO, files_under, mapped_framework_libs, running_hub
from test_durian_model import write_tiny_folder

PHOTO = DURIAN_PHOTO
LABELS = {"D24", "Jin Feng (Golden Phoenix)", "Mao Shan Wang", "Red Prawn"}


def test_prediction_through_the_hub(tmp_path):
    tiny = write_tiny_folder(tmp_path / "durian-tiny")
    system_tmp = tmp_path / "tmp"  # the hub's TMPDIR: its run folder, and every worker's, live in here
    system_tmp.mkdir()
    cache_dir = tmp_path / "hub-cache"
    with running_hub("--only", "durian", "--model", f"durian={tiny}", "--worker-threads", "1",
                     env={"TMPDIR": str(system_tmp), "GRADIO_TEMP_DIR": ""}, cache_dir=cache_dir) as hub:
        client = hub.client()
        api = client.view_api(print_info=False, return_format="dict")
        assert set(api["named_endpoints"]) == {"/durian"}

        probs, heat, verdict, summary = client.predict(handle_file(str(PHOTO)), api_name="/durian")
        assert {c["label"] for c in probs["confidences"]} == LABELS
        assert heat and heat.endswith((".webp", ".png", ".jpg", ".jpeg"))
        assert set(summary) >= {"label", "top_class", "confidence", "uncertain", "threshold",
                                "probabilities", "trained"}
        assert set(summary["probabilities"]) == LABELS and summary["trained"] is True
        assert summary["top_class"] in LABELS
        assert "Untrained" not in verdict

        not_a_photo = tmp_path / "notes.jpg"
        not_a_photo.write_text("this is not a photo\n" * 50)
        with pytest.raises(Exception, match="not an image"):
            client.predict(handle_file(str(not_a_photo)), api_name="/durian")

        again = client.predict(handle_file(str(PHOTO)), api_name="/durian")[3]
        assert again["probabilities"] == summary["probabilities"]  # same worker, same answer
        # the worker kept its traced graph in the hub's cache dir, for the next worker of this model
        [entry] = (cache_dir / "derived" / "durian").iterdir()
        assert (entry / "saved_model.pb").is_file()

        _, metrics = hub.get("/metrics")
        assert 'demohub_loads_total{model="durian"} 1' in metrics
        assert 'demohub_crashes_total{model="durian"} 0' in metrics
        assert mapped_framework_libs(hub.pid) == set()
        workers = hub.worker_pids()
        assert len(workers) == 1 and mapped_framework_libs(workers[0])  # TensorFlow lives there
        # the worker has a TMPDIR of its own, and the load left nothing in it: the weights it
        # unpacked are gone, and the Grad-CAM function is traced without autograph, which
        # would leave a module per traced function that only a clean exit removes
        assert list(system_tmp.glob("gradio/demohub-*/worker-durian-*"))
        assert not [p for p in files_under(system_tmp) if "worker-durian-" in str(p)]
        assert not list(system_tmp.glob("__autograph*")) and not list(system_tmp.glob("durian-weights-*"))
    assert not list(system_tmp.rglob("*.py")), sorted(system_tmp.rglob("*"))
