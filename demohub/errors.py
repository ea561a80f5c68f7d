"""Errors a person can act on.

Every error the hub shows carries a message that says what went wrong and what
to do next; the UI turns any `HubError` into a `gr.Error` with that message.
"""

from __future__ import annotations


class HubError(Exception):
    """Base class: `str(error)` is written for the person using the demo."""


class InputError(HubError):
    """The request itself was wrong (corrupt image, empty question...).

    Demos raise it from `predict` inside the worker or from their tab; the
    worker stays healthy and the message reaches the user unchanged.
    """


class ModelUnavailable(HubError):
    """The model's weights could not be found or downloaded."""


class HubAtCapacity(HubError):
    """Every slot is busy with a request in flight; nothing could be evicted."""


class WorkerFailed(HubError):
    """The model's worker crashed, hung or failed to load; it is reloaded on
    the next request."""

    #: set on a failed load: its process was killed or paused by someone else
    #: (not the demo's load raising, not the hub's deadline), so it is tried again at once
    from_outside: bool = False


class WorkerTimeout(WorkerFailed):
    """The worker did not answer within the model's deadline and was killed."""


class NotStarted(WorkerFailed):
    """The worker ended before it started this request (staged behind one that
    failed): the request never ran, so another copy of the model may take it."""


class CopyFailed(WorkerFailed):
    """One copy of a model that runs as several failed this request and was
    ended; the model's other copies keep serving. `crashed`: it died without
    the hub's doing (a timeout the hub enforced is not a crash)."""

    def __init__(self, message: str, crashed: bool):
        super().__init__(message)
        self.crashed = crashed


class ModelError(WorkerFailed):
    """The model raised on one request, or could not load. `str()` is for the
    visitor; `detail` (the exception and traceback) is for the operator's log
    and Status tab, never for the client."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail


class ModelBusy(HubError):
    """The model stayed busy with other requests past this request's deadline."""
