"""Read and write the `config.json` of a Hub-layout model folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_config(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing; a model folder needs config.json") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None


def write_config(model_dir: str | Path, config: dict[str, Any]) -> Path:
    path = Path(model_dir) / "config.json"
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
