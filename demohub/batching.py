"""Coalescing concurrent requests for one model into one worker call.

Requests that arrive while the model is busy queue up; when the call in
flight returns, the next caller sends up to `max_size` queued requests as one
`Batch`, and the worker answers them with the runtime's `predict_batch` (one
forward pass) when it has one, one by one otherwise. A lone request never
waits for company: with nothing in flight it goes at once.

Each request still gets its own answer and its own error: the worker returns
one `Outcome` per request, and if `predict_batch` raises it retries the batch
request by request so only the bad request fails.

Threads: no thread is started here. Every caller waits on its own event; the
first caller to find the model free leads one call for the batch it takes,
then hands the lead to the oldest queued caller. `_lock` guards only the queue.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from demohub.contract import batches, where
from demohub.errors import InputError, ModelBusy, ModelError, WorkerTimeout

OK, INPUT_ERROR, ERROR = "ok", "input_error", "error"


@dataclass(frozen=True)
class Batch:
    """Several requests sent to a worker as one call."""

    requests: tuple


@dataclass(frozen=True)
class Outcome:
    """One request's answer inside a batch reply."""

    kind: str  # OK, INPUT_ERROR or ERROR
    value: Any = None  # the result, or the message
    detail: str = ""  # the traceback of an ERROR, for the operator


# -- worker side ---------------------------------------------------------------------


def _one(runtime: Any, model: Any, request: Any) -> Outcome:
    try:
        return Outcome(OK, runtime.predict(model, request))
    except InputError as exc:
        return Outcome(INPUT_ERROR, str(exc))
    except Exception as exc:  # noqa: BLE001 - this request's failure only
        return Outcome(ERROR, f"{type(exc).__name__}: {exc}", traceback.format_exc())


def run_batch(runtime: Any, model: Any, batch: Batch) -> list[Outcome]:
    """Answer every request of `batch`; never raises for the model's faults."""
    requests = list(batch.requests)
    if batches(runtime):
        try:
            results = list(runtime.predict_batch(model, requests))
        except Exception:  # noqa: BLE001 - one bad request: retry one by one below
            results = None
        if results is not None:
            if len(results) == len(requests):
                return [Outcome(OK, r) for r in results]
            message = (f"{where(runtime)}: predict_batch returned {len(results)} results for "
                       f"{len(requests)} requests; it must return one per request, in order")
            return [Outcome(ERROR, message, message) for _ in requests]
    return [_one(runtime, model, r) for r in requests]


# -- hub side --------------------------------------------------------------------------


def result_of(outcome: Outcome, name: str) -> Any:
    """The request's result, or the exception the caller would have had alone."""
    if outcome.kind == OK:
        return outcome.value
    if outcome.kind == INPUT_ERROR:
        raise InputError(outcome.value)
    raise ModelError(f"The {name} model failed on this request; the error is logged for the "
                     "operator. Try another input or try again.",
                     detail=f"{outcome.value}\n{outcome.detail}".strip())


@dataclass(eq=False)
class _Item:
    request: Any
    deadline: float
    event: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    done: bool = False
    outcome: Any = None  # an Outcome, or the exception the whole call raised


#: run(batch) -> one Outcome per request, raising if the call as a whole failed.
Run = Callable[[Batch], Sequence[Outcome]]


class Batcher:
    """Per-model queue of requests waiting for the model to be free."""

    def __init__(self, name: str, max_size: int, grace_s: float = 1.0):
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.name = name
        self.max_size = max_size
        self.grace_s = grace_s
        self._lock = threading.Lock()
        self._queue: list[_Item] = []
        self._running = False
        #: sizes of the batches sent so far (for tests and the bench)
        self.sizes: list[int] = []

    def submit(self, request: Any, run: Run, timeout: float) -> Any:
        """`request`'s result, from a call shared with whoever else is waiting.

        Waits at most `timeout` for the model to be free; once taken into a
        call, at most that call's own deadline (`timeout`) plus a grace."""
        item = _Item(request, time.monotonic() + timeout)
        with self._lock:
            self._queue.append(item)
            if not self._running:
                self._running = item.lead = True
        while True:
            if not item.lead:
                item.event.wait(max(0.0, item.deadline - time.monotonic()))
            with self._lock:
                if item.done:
                    break
                if not item.lead and time.monotonic() >= item.deadline:
                    if item in self._queue:
                        self._queue.remove(item)
                        raise ModelBusy(f"The {self.name} model stayed busy with other requests "
                                        f"for {timeout:.0f} s; try again in a moment.")
                    raise WorkerTimeout(f"the {self.name} model did not answer within {timeout:.0f} s")
                if not item.lead:
                    item.event.clear()
                    continue
            self._lead(run, timeout)
        if isinstance(item.outcome, BaseException):
            raise _fresh(item.outcome)
        return result_of(item.outcome, self.name)

    def _lead(self, run: Run, timeout: float) -> None:
        """Send one call for the oldest queued requests, then pass the lead on."""
        with self._lock:
            taken = self._queue[:self.max_size]
            del self._queue[:len(taken)]
            in_flight_until = time.monotonic() + timeout + self.grace_s
            for it in taken:
                it.lead = False
                it.deadline = max(it.deadline, in_flight_until)
        try:
            outcomes: Sequence[Any] = run(Batch(tuple(it.request for it in taken)))
            if len(outcomes) != len(taken):
                raise ModelError(f"The {self.name} model answered a batch wrongly; the error is logged "
                                 "for the operator.",
                                 detail=f"{len(outcomes)} outcomes for {len(taken)} requests")
        except BaseException as exc:  # noqa: BLE001 - every request in the call gets it
            outcomes = [exc] * len(taken)
        with self._lock:
            self.sizes.append(len(taken))
            for it, outcome in zip(taken, outcomes):
                it.outcome, it.done = outcome, True
                it.event.set()
            if self._queue:
                nxt = self._queue[0]
                nxt.lead = True
                nxt.event.set()
            else:
                self._running = False


def _fresh(exc: BaseException) -> BaseException:
    """A copy per waiting caller, so threads never share one traceback."""
    if isinstance(exc, ModelError):
        return ModelError(str(exc), detail=exc.detail)
    try:
        return type(exc)(*exc.args)
    except Exception:  # noqa: BLE001 - an exception type with an unusual constructor
        return exc


def answered(request: Any, value: Any) -> int:
    """Requests a successful worker call answered: a batch's OK outcomes, else 1
    (as alone, a request that failed is not counted as a prediction)."""
    if not isinstance(request, Batch):
        return 1
    return sum(1 for o in value if isinstance(o, Outcome) and o.kind == OK)


def error_details(request: Any, value: Any) -> list[str]:
    """The operator's detail for each request of a batch call that failed."""
    if not isinstance(request, Batch):
        return []
    return [f"{o.value}\n{o.detail}".strip() for o in value if isinstance(o, Outcome) and o.kind == ERROR]
