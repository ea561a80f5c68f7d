"""The durian tab (hub process): photo in; breed probabilities, heatmap, a
verdict with the breed's description, and the JSON the API returns."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from demohub.kit.photo import PhotoUpload
from demohub.kit.verdict import VerdictLabel
from demohub.ui import PLACEHOLDER_BANNER


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
            verdict = gr.Markdown()
            label = VerdictLabel(label="Breed probabilities", num_top_classes=4)
            heat = gr.Image(label="Grad-CAM: where the model looked", type="numpy", format="jpeg",
                            interactive=False)
            summary = gr.JSON(label="API result")

    def identify(path: str | None, progress=gr.Progress()):
        if not path:
            raise ctx.input_error("Upload a durian photo first: a JPEG, PNG or WebP "
                                  "(from Python: gradio_client.handle_file('durian.jpg')).")
        result = ctx.predict({"image": path}, progress)
        return result, result.heatmap, verdict_markdown(result), result.to_json()

    submit.click(identify, [photo], [label, heat, verdict, summary], api_name=ctx.api_name,
                 concurrency_limit=ctx.concurrency_limit)
