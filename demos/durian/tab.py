"""The durian tab (hub process): photo in; breed probabilities, heatmap, a
verdict with the breed's description, and the JSON the API returns."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from demohub.kit import api
from demohub.kit.photo import PhotoUpload
from demohub.kit.verdict import PLACEHOLDER_BANNER, VerdictLabel


def verdict_markdown(result) -> str:
    """Headline, the breed's look and taste (or why we are unsure), and the
    untrained banner when the weights are a placeholder."""
    if result.uncertain:
        head = f"### Uncertain (best guess {result.label}, {result.confidence:.0%})"
    else:
        head = f"### {result.label} ({result.confidence:.0%})"
    parts = [head, result.details]
    if not result.trained:
        parts.insert(0, PLACEHOLDER_BANNER)
    return "\n\n".join(p for p in parts if p)


def build(ctx) -> None:
    examples = [[p] for p in ctx.spec.examples if Path(p).is_file()]
    with gr.Row():
        with gr.Column():
            photo = PhotoUpload(label="Durian photo")
            submit = gr.Button("Identify the breed", variant="primary")
            if examples:
                gr.Examples(examples, inputs=[photo], api_visibility="private", label="Sample photos")
        with gr.Column():
            # The labels are the API's names (view_api, MCP): the same in every image demo.
            report = api.describe(gr.Markdown(label="Report"), api.REPORT)
            label = api.describe(VerdictLabel(label="Label", num_top_classes=4), api.LABEL)
            heatmap = api.describe(gr.Image(label="Heatmap", type="numpy", format="jpeg", interactive=False),
                                   api.HEATMAP)
            verdict = api.describe(gr.JSON(label="Verdict"), api.VERDICT)

    def identify(photo: str | None, progress=gr.Progress()):
        """Which of four durian breeds a photo shows.

        Args:
            photo: a photo of a durian (JPEG, PNG or WebP), sent as a file; web addresses are refused
        Returns:
            label: the predicted breed or 'Uncertain', with every breed's probability
            heatmap: where the model looked (Grad-CAM), as a JPEG
            report: the verdict as Markdown, with the breed's look and taste
            verdict: the verdict as JSON (label, confidence, uncertain, probabilities, trained)
        """
        if not photo:
            raise ctx.input_error("Upload a durian photo first: a JPEG, PNG or WebP "
                                  "(from Python: gradio_client.handle_file('durian.jpg')).")
        result = ctx.predict({"image": photo}, progress)
        return result, result.heatmap, verdict_markdown(result), result.to_json()

    submit.click(identify, [photo], [label, heatmap, report, verdict], api_name=ctx.api_name,
                 concurrency_limit=ctx.concurrency_limit)
