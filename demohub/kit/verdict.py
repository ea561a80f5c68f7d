"""A `gr.Label` whose headline can say "Uncertain" while still listing every
class's probability, so an unsure model never shows a class name as its
verdict."""

from __future__ import annotations

import inspect

import gradio as gr

from demohub.kit.classify import ImageClassification

UNCERTAIN = "Uncertain"

#: what a tab shows above a placeholder model's answer (and the hub on its model line)
PLACEHOLDER_BANNER = (
    "**⚠ Untrained weights — predictions are meaningless.** No trained model is configured "
    "for this demo, so the hub built an untrained placeholder to show the interface end to end."
)


def headline(result: ImageClassification) -> str:
    return UNCERTAIN if result.uncertain else result.label


class VerdictLabel(gr.Label):
    """Takes an `ImageClassification` (or a plain dict of probabilities)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)

    # Gradio serialises a component from its constructor's signature: show it gr.Label's.
    __init__.__signature__ = inspect.signature(gr.Label.__init__)

    def get_block_name(self) -> str:
        return "label"

    def postprocess(self, value):
        if isinstance(value, ImageClassification):
            data = super().postprocess(value.probabilities)
            data.label = headline(value)
            return data
        return super().postprocess(value)
