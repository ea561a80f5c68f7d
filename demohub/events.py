"""Structured log lines: one JSON object per event (load, evict, crash,
download...), so operators can grep and parse them."""

from __future__ import annotations

import json
import logging
import time

logger = logging.getLogger("demohub")


def event(kind: str, model: str | None = None, **fields: object) -> None:
    record = {"ts": round(time.time(), 3), "event": kind}
    if model is not None:
        record["model"] = model
    for key, value in fields.items():
        record[key] = round(value, 4) if isinstance(value, float) else value
    logger.info(json.dumps(record, default=str))
