"""The cassava tab: photo in; probabilities, heatmap, report and JSON out.
Runs in the hub process: no torch, no image decoding (the worker does that)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from demohub.kit.photo import PhotoUpload
from demohub.kit.verdict import VerdictLabel
from demohub.ui import PLACEHOLDER_BANNER


def verdict_markdown(result) -> str:
    banner = "" if result.trained else PLACEHOLDER_BANNER + "\n\n"
    return banner + result.details


def build(ctx) -> None:
    with gr.Row():
        with gr.Column():
            photo = PhotoUpload(label="Cassava leaf photo (JPEG, PNG or WebP)")
            submit = gr.Button("Diagnose", variant="primary")
            examples = [[p] for p in ctx.spec.examples if Path(p).is_file()]
            if examples:
                gr.Examples(examples=examples, inputs=[photo], api_visibility="private",
                            label="Sample photos")
        with gr.Column():
            verdict = gr.Markdown()
            probabilities = VerdictLabel(label="Probabilities", num_top_classes=5)
            heat = gr.Image(label="Where the model looked (Grad-CAM, predicted class)", type="numpy",
                            format="jpeg", interactive=False)
            summary = gr.JSON(label="JSON summary")

    def diagnose(path: str | None, progress=gr.Progress()):
        if not path:
            raise ctx.input_error("Upload a photo first: a JPEG, PNG or WebP of a cassava leaf "
                                  "(from Python: gradio_client.handle_file('leaf.jpg')).")
        result = ctx.predict({"image": path}, progress)
        return result, result.heatmap, verdict_markdown(result), result.to_json()

    submit.click(diagnose, inputs=[photo], outputs=[probabilities, heat, verdict, summary],
                 api_name=ctx.api_name,
                 concurrency_limit=ctx.concurrency_limit)
