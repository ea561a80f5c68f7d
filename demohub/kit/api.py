"""What `gradio_client`'s `view_api()`, the API page and MCP say about an input
or output. Gradio 6 takes the names from the handler's parameter names (inputs)
and the components' labels (outputs); the descriptions it reads from each
component's `api_info` (`additional_description` for an input, `description`
for an output), which no constructor argument sets: `describe` does."""

from __future__ import annotations

from typing import TypeVar

import gradio as gr

C = TypeVar("C", bound=gr.components.Component)


def describe(component: C, text: str) -> C:
    """Give `component` the one-sentence description clients read, as an input and
    as an output (only this instance changes; its class and rendering do not)."""
    as_input, as_output = component.api_info_as_input, component.api_info_as_output
    component.api_info_as_input = lambda: {**as_input(), "additional_description": text}  # type: ignore[method-assign]
    component.api_info_as_output = lambda: {**as_output(), "description": text}  # type: ignore[method-assign]
    return component


#: The same outputs are called and described the same in every image demo.
LABEL = "the predicted class, or 'Uncertain' when the model is not sure, with every class's probability"
HEATMAP = "a JPEG file: the photo with a Grad-CAM heatmap of where the model looked for the predicted class"
REPORT = "the verdict as Markdown for people: what the class means, or why the model is unsure"
VERDICT = ("the verdict as JSON: label, top_class, confidence, uncertain, every class's probability and "
           "trained (false while the weights are an untrained placeholder)")
