"""The demo hub: one Gradio app, one tab per demo, one worker process per
loaded model. See README.md for the architecture."""
