"""The hub's event bus. Every event (load, evict, crash, download...) is one
JSON log line that operators can grep and parse, and a record handed to the
subscribers (the metrics, the Status tab's history), so they learn what
happened without the registry knowing they exist."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable

logger = logging.getLogger("demohub")

Subscriber = Callable[[dict], None]

#: Copied on write, so `event` reads it without a lock and never calls a subscriber under one.
_subscribers: tuple[Subscriber, ...] = ()
_subscribers_lock = threading.Lock()


def subscribe(callback: Subscriber) -> Callable[[], None]:
    """Call `callback(record)` for every event from now on; returns the function
    that unsubscribes it. Callbacks run on the emitting thread, which may hold the
    registry's lock: they must be quick and must not call back into the registry.
    An exception in a callback is logged and goes no further."""
    global _subscribers
    with _subscribers_lock:
        _subscribers = (*_subscribers, callback)

    def unsubscribe() -> None:
        global _subscribers
        with _subscribers_lock:
            _subscribers = tuple(s for s in _subscribers if s is not callback)

    return unsubscribe


def event(kind: str, model: str | None = None, *, quiet: bool = False, **fields: object) -> None:
    """Record one event. `quiet` events (one per request, say) reach the
    subscribers but not the log."""
    record: dict = {"ts": round(time.time(), 3), "event": kind}
    if model is not None:
        record["model"] = model
    for key, value in fields.items():
        record[key] = round(value, 4) if isinstance(value, float) else value
    if not quiet:
        logger.info(json.dumps(record, default=str))
    for callback in _subscribers:
        try:
            callback(dict(record))  # a copy each: one subscriber cannot change what the next sees
        except Exception as exc:  # noqa: BLE001 - a broken observer must not break the hub
            logger.warning(json.dumps({"ts": record["ts"], "event": "subscriber_error", "for": kind,
                                       "error": f"{type(exc).__name__}: {exc}"[:300]}))
