"""PhotoUpload must look exactly like gr.Image to the browser, yet hand the
worker the uploaded path without decoding it in the hub."""

from pathlib import Path

import gradio as gr
import pytest
from gradio.data_classes import FileData

from demohub.kit.photo import PhotoUpload


def test_serialises_like_gr_image():
    with gr.Blocks():
        photo = PhotoUpload(label="leaf")
        image = gr.Image(type="filepath", label="leaf", sources=["upload", "clipboard"])
    mine, theirs = photo.get_config(), image.get_config()
    assert photo.get_block_name() == "image"
    assert {k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k)} <= {"name"}


def test_passes_the_path_without_opening_it(tmp_path):
    from gradio.utils import get_upload_folder

    corrupt = Path(get_upload_folder()) / "test-kit-photo" / "x.jpg"
    corrupt.parent.mkdir(parents=True, exist_ok=True)
    corrupt.write_bytes(b"not an image at all")
    with gr.Blocks():
        photo = PhotoUpload()
    assert photo.preprocess(FileData(path=str(corrupt), orig_name="x.jpg")) == str(corrupt.resolve())
    assert photo.preprocess(None) is None
    corrupt.unlink()


def test_refuses_paths_outside_the_upload_folder(tmp_path):
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"x")
    with gr.Blocks():
        photo = PhotoUpload()
    with pytest.raises(gr.Error, match="paths on the server are not accepted"):
        photo.preprocess(FileData(path=str(outside)))


def test_verdict_label_says_uncertain_but_keeps_every_probability():
    from demohub.kit.classify import build_result
    from demohub.kit.verdict import VerdictLabel

    with gr.Blocks():
        label = VerdictLabel(num_top_classes=3)
    assert label.get_block_name() == "label"
    unsure = label.postprocess(build_result([0.4, 0.35, 0.25], ["a", "b", "c"], threshold=0.57, trained=True))
    sure = label.postprocess(build_result([0.8, 0.15, 0.05], ["a", "b", "c"], threshold=0.57, trained=True))
    assert (unsure.label, sure.label) == ("Uncertain", "a")
    assert [c.label for c in unsure.confidences] == ["a", "b", "c"]
    assert label.postprocess({"x": 1.0}).label == "x"
