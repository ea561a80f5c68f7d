"""The two modules a demo provides, as typed Protocols, and the checks that
hold a module to them early: a tab when the hub discovers it, a runtime in the
worker before it says it is ready. A broken demo then fails at start or at
load with a sentence naming its file, not on a visitor's first request.

This module is light (no framework): the hub checks tabs with it and workers
check runtimes with it.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, Sequence, runtime_checkable


@runtime_checkable
class Runtime(Protocol):
    """`SPEC.runtime`: runs only in the demo's worker process."""

    def load(self, model_dir: Path) -> Any:
        """Read the model folder; the returned object is passed to `predict`."""

    def predict(self, model: Any, request: Any) -> Any:
        """One request -> plain data; raise `demohub.errors.InputError` for bad input."""


class BatchRuntime(Runtime, Protocol):
    """A runtime that can answer several requests in one call (one forward pass)."""

    def predict_batch(self, model: Any, requests: Sequence[Any]) -> Sequence[Any]:
        """Results in the order of `requests`, one per request."""


class PlaceholderRuntime(Runtime, Protocol):
    def placeholder(self, model_dir: Path) -> None:
        """Write an untrained model folder into `model_dir` (used when no weights exist)."""


@runtime_checkable
class Tab(Protocol):
    """`SPEC.tab`: runs in the hub process, inside the demo's tab."""

    def build(self, ctx: Any) -> None:
        """Lay out the tab and wire one event with `api_name=ctx.api_name`."""


class ContractError(TypeError):
    """A demo module does not match the contract; the message names its file."""


#: name -> positional arguments the hub passes; required first, then optional.
RUNTIME_REQUIRED = {"load": ("model_dir",), "predict": ("model", "request")}
RUNTIME_OPTIONAL = {"placeholder": ("model_dir",), "predict_batch": ("model", "requests")}
TAB_REQUIRED = {"build": ("ctx",)}

_GUIDE = "see demohub/contract.py for the demo contract"


def where(module: ModuleType) -> str:
    """The file to name in a message (a runtime may also be any object)."""
    return getattr(module, "__file__", None) or getattr(module, "__name__", None) or type(module).__name__


def _check(module: ModuleType, name: str, args: tuple[str, ...], required: bool) -> None:
    fn = getattr(module, name, None)
    if fn is None:
        if required:
            call = f"{name}({', '.join(args)})"
            raise ContractError(f"{where(module)} must define {call}; {_GUIDE}")
        return
    if not callable(fn):
        raise ContractError(f"{where(module)}: {name} must be a function, not {type(fn).__name__}")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or C callable: nothing to check
        return
    try:
        signature.bind(*args)
    except TypeError as exc:
        raise ContractError(f"{where(module)}: {name}{signature} cannot be called as "
                            f"{name}({', '.join(args)}) ({exc}); {_GUIDE}") from None


def check_runtime(module: ModuleType) -> Runtime:
    """`module` as a Runtime, or ContractError naming its file."""
    for name, args in RUNTIME_REQUIRED.items():
        _check(module, name, args, required=True)
    for name, args in RUNTIME_OPTIONAL.items():
        _check(module, name, args, required=False)
    return module  # type: ignore[return-value]


def check_tab(module: ModuleType) -> Tab:
    """`module` as a Tab, or ContractError naming its file."""
    for name, args in TAB_REQUIRED.items():
        _check(module, name, args, required=True)
    return module  # type: ignore[return-value]


def batches(runtime: Runtime) -> bool:
    return callable(getattr(runtime, "predict_batch", None))
