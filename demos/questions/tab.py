"""The questions tab (hub process: gradio only). One public event,
`/questions`: a question string in, coarse and fine predictions out. The
question is checked here with the worker's own pure rules (`text.check`)."""

from __future__ import annotations

import gradio as gr

from demohub.errors import InputError
from demohub.kit import api
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
    question = api.describe(gr.Textbox(label="Question", placeholder="What is the capital of France?", lines=2,
                                       max_lines=6), "an English question, at most a few sentences")
    button = gr.Button("Classify", variant="primary")
    # The labels are the API's names (view_api, MCP); report and verdict as in the image demos.
    with gr.Row():
        coarse = api.describe(gr.Label(label="Coarse type", num_top_classes=6),
                              "the kind of answer expected (e.g. 'location (LOC)'), with probabilities")
        fine = api.describe(gr.Label(label="Fine type", num_top_classes=5),
                            "the finer kind of answer (e.g. 'LOC:city'), with probabilities")
    report = api.describe(gr.Markdown(label="Report"), "the expected answer type as Markdown for people")
    verdict = api.describe(gr.JSON(label="Verdict", visible=False),
                           "the result as JSON: coarse_label, coarse_name, fine_label, confidence, unsure, "
                           "and every label's probability")

    def classify(question: str, progress=gr.Progress()):
        """What kind of answer a question expects (TREC types: a person, a location, a number...).

        Args:
            question: an English question, at most a few sentences
        Returns:
            coarse_type: the kind of answer expected, with probabilities
            fine_type: the finer kind of answer, with probabilities
            report: the expected answer type as Markdown
            verdict: the result as JSON
        """
        try:
            question = check(question)  # here, so a bad question never needs the model loaded
        except InputError as exc:
            raise ctx.input_error(str(exc)) from None
        result = ctx.predict({"text": question}, progress)
        return readable_coarse(result["coarse"]), result["fine"], summary(result), result

    outputs = [coarse, fine, report, verdict]
    # One limit for both ways in (button and Enter), so the model's requests never hold
    # more of Gradio's worker threads than one batch needs.
    limit = dict(concurrency_limit=ctx.concurrency_limit, concurrency_id=ctx.api_name)
    button.click(classify, question, outputs, api_name=ctx.api_name, **limit)
    question.submit(classify, question, outputs, api_visibility="private", **limit)
    gr.Examples(examples=[[q] for q in EXAMPLES], inputs=question, label="Try a question",
                cache_examples=False, api_visibility="private")
