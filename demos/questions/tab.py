"""The questions tab (hub process: gradio only). One public event,
`/questions`: a question string in, coarse and fine predictions out. The
question is checked here with the worker's own pure rules (`text.check`)."""

from __future__ import annotations

import gradio as gr

from demohub.errors import InputError
from demos.questions import EXAMPLES
from demos.questions.labels import COARSE_NAMES
from demos.questions.text import check


def readable_coarse(probabilities: dict[str, float]) -> dict[str, float]:
    """`LOC` -> `location (LOC)`, so the coarse label reads as words."""
    return {f"{COARSE_NAMES.get(code, code)} ({code})": p for code, p in probabilities.items()}


def summary(result: dict) -> str:
    """The readable answer line under the labels."""
    line = (f"**Expected answer: {result['coarse_name']}** "
            f"(`{result['coarse_label']}`, fine `{result['fine_label']}`, "
            f"confidence {result['confidence']:.0%})")
    if result.get("unsure"):
        line += "\n\n⚠️ Low confidence: this may not be an English question the model knows how to read."
    if result.get("notice"):
        line += f"\n\nℹ️ {result['notice']}"
    return line


def build(ctx) -> None:
    question = gr.Textbox(label="Question", placeholder="What is the capital of France?", lines=2,
                          max_lines=6)
    button = gr.Button("Classify", variant="primary")
    with gr.Row():
        coarse = gr.Label(label="Coarse answer type", num_top_classes=6)
        fine = gr.Label(label="Fine answer type", num_top_classes=5)
    name = gr.Markdown()
    details = gr.JSON(label="Full result (the /questions API answer)", visible=False)

    def classify(text: str, progress=gr.Progress()):
        try:
            text = check(text)  # here, so a bad question never needs the model loaded
        except InputError as exc:
            raise ctx.input_error(str(exc)) from None
        result = ctx.predict({"text": text}, progress)
        return readable_coarse(result["coarse"]), result["fine"], summary(result), result

    outputs = [coarse, fine, name, details]
    # One limit for both ways in (button and Enter), so the model's requests never hold
    # more of Gradio's worker threads than one batch needs.
    limit = dict(concurrency_limit=ctx.concurrency_limit, concurrency_id=ctx.api_name)
    button.click(classify, question, outputs, api_name=ctx.api_name, **limit)
    question.submit(classify, question, outputs, api_visibility="private", **limit)
    gr.Examples(examples=[[q] for q in EXAMPLES], inputs=question, label="Try a question",
                cache_examples=False, api_visibility="private")
