"""Durian breed from a photo (Keras / TensorFlow in the worker only).

This module runs in the hub process: it may import only the standard library,
gradio and demohub.
"""

from pathlib import Path

from demohub.spec import DemoSpec

#: Sample photos shipped with the demo (attribution: examples/README.md), so every
#: install shows them before any model folder exists (a Hub download, a placeholder).
EXAMPLES = Path(__file__).resolve().parent / "examples"

SPEC = DemoSpec(
    name="durian",
    title="Durian breed",
    description=(
        "Upload a photo of a durian: the model names its breed (D24, Jin Feng / Golden Phoenix, "
        "Mao Shan Wang or Red Prawn), shows where it looked with a Grad-CAM heatmap, and says "
        "\"uncertain\" when no breed is likely enough."
    ),
    runtime="demos.durian.runtime",
    tab="demos.durian.tab",
    examples=(str(EXAMPLES / "durian_1.jpg"),),
    expected_load_s=15.0,
    load_timeout_s=300.0,
    predict_timeout_s=60.0,
    baseline_concurrency=1,
    # what runtime.py reads: config.json and its weights_file (model.keras, or a legacy .h5)
    model_files=("config.json", "*.keras", "*.h5", "README.md"),
    device="auto",
)
