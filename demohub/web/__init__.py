"""The web front: the Gradio page, the door every request passes, and what the
hub shows about itself (Status tab, metrics). It asks the registry
(`demohub.registry`) for everything; nothing below it imports this package."""
