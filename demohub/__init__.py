"""The demo hub: one Gradio app serving several trained models, one tab each.

Start reading at README's "How it fits together"."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
"""The checkout: where `demos/`, `models/` and `.cache/` live by default, and what
a worker process gets on its PYTHONPATH."""
