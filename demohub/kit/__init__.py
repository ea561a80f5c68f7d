"""Framework-free helpers for demo authors: safe image decoding, heatmap
overlays, classification results and model-folder configs. Pure functions,
usable in the hub process and in workers alike."""
