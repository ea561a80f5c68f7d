"""Local backends: model workers as child processes of the hub on this machine.

Each protocol's two ends sit side by side:
- `spawn.py` (hub side: `LocalWorker`, `SpawnBackend`) <-> `worker.py` (a fresh
  `python -m demohub.backends.local.worker` process that runs one model);
- `template.py` (hub side: `TemplateBackend`) <-> `template_main.py` (a process
  that has imported one framework family and forks workers on request);
- `copies.py`: several workers of one model behind one handle;
- `wire.py`: the framed messages both ends exchange over a socket pair.
"""
