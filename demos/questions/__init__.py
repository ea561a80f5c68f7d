"""Questions demo: an English question -> its TREC answer type (coarse and fine).

Imported by the hub process: gradio/stdlib/demohub only. The model lives in
`runtime` (worker process only).
"""

from demohub.spec import DemoSpec

EXAMPLES = (
    "What is the capital of France?",
    "Who wrote Hamlet?",
    "How many moons does Jupiter have?",
    "When did the Berlin Wall fall?",
    "What does NASA stand for?",
    "Why is the sky blue?",
    "How far is the Moon from the Earth?",
    "What is the best way to learn to swim?",
)

SPEC = DemoSpec(
    name="questions",
    title="Question type",
    description=(
        "Type an English question; the model predicts what kind of answer it expects "
        "(TREC answer types): a coarse class such as *location* or *numeric value*, and a "
        "fine class such as `LOC:city` or `NUM:date`, with probabilities. A small transformer "
        "(3 layers, int8 on disk) distilled from a fine-tuned MPNet-base on the 5.5k TREC training questions."
    ),
    runtime="demos.questions.runtime",
    tab="demos.questions.tab",
    examples=EXAMPLES,
    predict_timeout_s=20.0,
    load_timeout_s=120.0,
    expected_load_s=4.0,
    baseline_concurrency=4,
    # Batching off: through the hub on a quiet 2-core machine it raised throughput only
    # 1.21-1.51x (the HTTP front, not the model, is the bottleneck), under the 1.5x the
    # hub asks of it (docs/benchmarks.md). runtime.predict_batch stays: set max_batch=32
    # where the model dominates (a slower model, a GPU).
    max_batch=1,
    # what runtime.py reads through folder.load
    model_files=("config.json", "model.safetensors", "tokenizer.json", "README.md"),
    # a 3-layer model on short inputs: copying to a GPU would cost more than it saves
    device="cpu",
)
