"""The cassava tab: photo in; probabilities, heatmap, report and JSON out.
Runs in the hub process: no torch, no image decoding (the worker does that)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from demohub.kit import api
from demohub.kit.photo import PhotoUpload
from demohub.kit.verdict import PLACEHOLDER_BANNER, VerdictLabel


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
            # The labels are the API's names (view_api, MCP): the same in every image demo.
            report = api.describe(gr.Markdown(label="Report"), api.REPORT)
            label = api.describe(VerdictLabel(label="Label", num_top_classes=5), api.LABEL)
            heatmap = api.describe(gr.Image(label="Heatmap", type="numpy", format="jpeg", interactive=False),
                                   api.HEATMAP)
            verdict = api.describe(gr.JSON(label="Verdict"), api.VERDICT)

    def diagnose(photo: str | None, progress=gr.Progress()):
        """Which of five cassava leaf diseases (or healthy) a leaf photo shows.

        Args:
            photo: a photo of a cassava leaf (JPEG, PNG or WebP), sent as a file; web addresses are refused
        Returns:
            label: the predicted class or 'Uncertain', with every class's probability
            heatmap: where the model looked (Grad-CAM), as a JPEG
            report: the verdict as Markdown
            verdict: the verdict as JSON (label, confidence, uncertain, probabilities, trained)
        """
        if not photo:
            raise ctx.input_error("Upload a photo first: a JPEG, PNG or WebP of a cassava leaf "
                                  "(from Python: gradio_client.handle_file('leaf.jpg')).")
        result = ctx.predict({"image": photo}, progress)
        return result, result.heatmap, verdict_markdown(result), result.to_json()

    submit.click(diagnose, inputs=[photo], outputs=[label, heatmap, report, verdict],
                 api_name=ctx.api_name,
                 concurrency_limit=ctx.concurrency_limit)
