"""Cassava leaf disease: a photo -> one of five classes, a Grad-CAM heatmap and
a short report for the grower. Importing this package stays torch-free."""

from pathlib import Path

from demohub.spec import DemoSpec

#: Sample photos shipped with the demo (attribution: examples/README.md), so every
#: install shows them before any model folder exists (a Hub download, a placeholder).
EXAMPLES = Path(__file__).resolve().parent / "examples"

SPEC = DemoSpec(
    name="cassava",
    title="Cassava leaf disease",
    description=(
        "Upload a photo of a cassava leaf. The model (ResNeXt-50 32x4d) says which of five classes it "
        "shows (bacterial blight, brown streak, green mottle, mosaic disease or healthy), with all five "
        "probabilities, a heatmap of where it looked, and what a grower can do. Below the confidence "
        "threshold it answers *uncertain*."
    ),
    runtime="demos.cassava.runtime",
    tab="demos.cassava.tab",
    examples=tuple(str(EXAMPLES / f"cassava_{i}.jpg") for i in (1, 2, 3)),
    predict_timeout_s=60.0,
    load_timeout_s=300.0,
    expected_load_s=10.0,  # import torch + torchvision + 92 MB of weights, 2 shared cores
    baseline_concurrency=1,
    # what runtime.py reads (config.json names its weights: model.safetensors by default);
    # a Hub repo that also ships a .pth or .bin is not downloaded in full
    model_files=("config.json", "*.safetensors", "README.md"),
    device="auto",  # CUDA when the machine has it (HUB_DEVICE_CASSAVA=cpu to keep it off)
)
