"""How the page refuses a bad request: one sentence the person can act on for
the client, one log line for the operator, no traceback.

Gradio prints a traceback for every exception a handler raises (a `gr.Error`
too, unless `print_exception=False`), stringifies whatever JSON reaches a
Textbox, and validates file payloads with pydantic and its upload-folder check
before any handler runs, answering with the validator's text (exception names,
pydantic URLs, server paths). `HubBlocks` checks every input against the type
its component declares before Gradio touches it, and turns Gradio's own payload
errors into a sentence.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
from gradio.exceptions import InvalidPathError
from pydantic import ValidationError

from demohub import events

IMAGE_HINT = ("Send an image file: gradio_client.handle_file('photo.jpg') from Python, "
              "or upload a photo on the page.")
FILE_HINT = "Send a file: gradio_client.handle_file('path/to/file') from Python, or upload it on the page."
SERVER_PATH = "Paths on the server are not accepted. "

#: JSON schema type -> (Python types accepted, words for the person).
_JSON_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "string": ((str,), "text"),
    "number": ((int, float), "a number"),
    "integer": ((int,), "a whole number"),
    "boolean": ((bool,), "true or false"),
}
_SENT = {bool: "true/false", int: "a number", float: "a number", str: "text", list: "a list",
         dict: "an object"}


def refusal(message: str, model: str | None = None, title: str = "Input error") -> gr.Error:
    """A `gr.Error` for a request that was wrong, logged as one line, no traceback."""
    events.event("input_error", model, message=message[:300])
    return gr.Error(message, title=title, print_exception=False)


def _is_file_input(component: Any) -> bool:
    return isinstance(component, (gr.Image, gr.File, gr.Audio, gr.Video))


def hint(component: Any) -> str:
    """What to send to `component`, for a payload Gradio could not read."""
    return IMAGE_HINT if isinstance(component, gr.Image) else FILE_HINT


def payload_problem(component: Any, value: Any, api_name: str | None = None) -> str | None:
    """Why `value` cannot be `component`'s input (a sentence), or None if its
    type is right. `None` is always accepted: the handler decides about empty input."""
    if value is None:
        return None
    if _is_file_input(component):
        return None if isinstance(value, dict) else hint(component)
    try:
        schema = component.api_info()
    except Exception:  # noqa: BLE001 - a component without a schema is not checked here
        return None
    kind = schema.get("type") if isinstance(schema, dict) else None
    # gr.JSON's schema type is {} (any JSON): nothing to check, and not a key to look up
    accepted = _JSON_TYPES.get(kind) if isinstance(kind, str) else None
    if accepted is None:
        return None
    types, words = accepted
    if isinstance(value, types) and not (isinstance(value, bool) and bool not in types):
        return None
    noun = str(getattr(component, "label", None) or "input").lower()
    example = ""
    placeholder = getattr(component, "placeholder", None)
    if words == "text" and placeholder and api_name:
        example = f', e.g. client.predict("{placeholder}", api_name="/{api_name}")'
    what = words if noun in ("text", "input") else f"the {noun} as {words}"
    return f"Send {what}{example} (this request sent {_SENT.get(type(value), 'something else')})."


class HubBlocks(gr.Blocks):
    """`gr.Blocks` whose inputs are checked before Gradio preprocesses them."""

    async def preprocess_data(self, block_fn, inputs, state, explicit_call: bool = False):
        name = block_fn.api_name
        if len(inputs) < len(block_fn.inputs):
            raise refusal(f"This endpoint takes {len(block_fn.inputs)} input(s); the request sent "
                          f"{len(inputs)}.", name)
        for component, value in zip(block_fn.inputs, inputs):
            problem = payload_problem(component, value, name)
            if problem:
                raise refusal(problem, name)
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except gr.Error as exc:
            # A component's own refusal (PhotoUpload...): same sentence, one line, no traceback.
            if not exc.print_exception:
                raise
            raise refusal(exc.message, name, exc.title) from None
        except (ValidationError, InvalidPathError) as exc:
            files = [c for c in block_fn.inputs if _is_file_input(c)]
            message = hint(files[0]) if files else "The request's input could not be read."
            if isinstance(exc, InvalidPathError):
                message = SERVER_PATH + message
            raise refusal(message, name) from None
