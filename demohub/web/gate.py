"""HTTP-level guards in front of the whole app: request size limits and one door in.

Gradio reads a whole request body before anything of ours runs, and its direct
routes (`/gradio_api/run/<name>`, `/gradio_api/api/<name>`) run an event without
the bounded queue. This ASGI middleware answers first, from the request line,
the headers and (for the few routes that name an event) a body it has already
capped, so a hostile request costs the hub a bounded read and nothing more.

The door: every prediction joins the queue (`/gradio_api/queue/join`, which the
page and `gradio_client` use, or `/gradio_api/call/<public name>`, which joins
the same queue). `/gradio_api/run/predict` serves only the page's un-queued
events (status refresh, loading an example), which never reach a model. Routes
neither needs (API docs, run history, screen recording, proxying...) are closed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

API = "/gradio_api/"
#: Multipart framing around the files of one upload (boundaries, part headers).
UPLOAD_OVERHEAD = 64 * 1024
CLIENT_HINT = "gradio_client: Client(url).predict(..., api_name='/<demo>')"
REMOTE_FILE = ("Files must be uploaded, not given as a web address: the hub does not download files for "
               "its callers. Download it yourself and send it with gradio_client.handle_file('photo.jpg').")


def describe_size(n: int) -> str:
    """1048576 -> '1 MB', 65536 -> '64 KB' (binary units, like the flags)."""
    for unit, factor in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= factor:
            value = n / factor
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


@dataclass(frozen=True)
class Event:
    """What the door needs to know about one Gradio event (a `BlockFunction`)."""

    fn_index: int
    api_name: str | None
    queued: bool
    public: bool


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


@dataclass(frozen=True)
class Pass:
    """A request the door lets through; `check` names the body check it still needs."""

    check: str | None = None  # "join", "direct", "call" or None
    upload: bool = False


#: GET/HEAD routes under /gradio_api/ that the page and gradio_client use.
_READ_ROUTES = re.compile(
    r"^(info|queue/data|heartbeat/[^/]+|file=.*|upload_progress|startup-events|app_id|user|"
    r"login_check|theme\.css)/?$"
)
_DOCS_ROUTES = re.compile(r"^(openapi\.json|runs)/?$")
_ROOT_DOCS = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}


@dataclass(frozen=True)
class Door:
    """Which routes and events are reachable from outside. Pure: no I/O."""

    events: dict[int, Event]
    api_docs: bool = False
    mcp: bool = False
    #: --reload: the page listens on Gradio's dev/reload stream to redraw itself after a rebuild
    dev_reload: bool = False
    public_names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        names = frozenset(e.api_name for e in self.events.values() if e.public and e.api_name)
        object.__setattr__(self, "public_names", names)

    def _endpoints(self) -> str:
        return ", ".join(f"/{n}" for n in sorted(self.public_names)) or "none"

    def unknown(self, name: str) -> Refusal:
        return Refusal(404, f"There is no endpoint named /{name}. The public endpoints are "
                            f"{self._endpoints()}; list them with gradio_client: Client(url).view_api().")

    def closed(self) -> Refusal:
        return Refusal(404, "Direct calls are closed: every prediction goes through the queue. "
                            f"Call an endpoint with {CLIENT_HINT}.")

    def route(self, method: str, path: str) -> Pass | Refusal:
        """The verdict from the request line alone."""
        if not path.startswith(API):
            if path in _ROOT_DOCS or path.startswith("/monitoring"):
                return Pass() if self.api_docs and path in _ROOT_DOCS else _not_found()
            return Pass() if method in ("GET", "HEAD") else _not_found()
        route = path[len(API):]
        if self.mcp and route.startswith("mcp/"):
            return Pass()
        if method in ("GET", "HEAD"):
            if _READ_ROUTES.match(route) or (self.dev_reload and route.rstrip("/") == "dev/reload"):
                return Pass()
            if _DOCS_ROUTES.match(route):
                return Pass() if self.api_docs else _not_found()
            call = re.match(r"^call/(?:v2/)?([^/]+)/[^/]+/?$", route)
            if call:
                return Pass() if call.group(1) in self.public_names else self.unknown(call.group(1))
            return _not_found()
        if method != "POST":
            return _not_found()
        if route.rstrip("/") in ("queue/join",):
            return Pass(check="join")
        if route.rstrip("/") == "upload":
            return Pass(upload=True)
        if route.rstrip("/") in ("cancel", "reset"):
            return Pass()
        direct = re.match(r"^(run|api)/([^/]+)/?$", route)
        if direct:
            name = direct.group(2)
            if direct.group(1) == "run" and name == "predict":
                return Pass(check="direct")
            return self.closed() if name in self.public_names else self.unknown(name)
        call = re.match(r"^call/(?:v2/)?([^/]+)/?$", route)
        if call:
            return Pass(check="call") if call.group(1) in self.public_names else self.unknown(call.group(1))
        return _not_found()

    def check_body(self, check: str, body: bytes) -> Refusal | None:
        """Which event a join or a direct call names, and whether that door serves it."""
        try:
            payload = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError, RecursionError):
            return Refusal(400, "The request body is not valid JSON.")
        if not isinstance(payload, dict):
            return Refusal(400, "The request body must be a JSON object with \"data\".")
        if not isinstance(payload.get("data"), list):  # else FastAPI answers with pydantic's text
            return Refusal(422, "\"data\" must be a list with one value per input, e.g. "
                                f"{{\"data\": [\"Who wrote Hamlet?\"]}}; or call with {CLIENT_HINT}.")
        if _names_a_remote_file(payload):
            return Refusal(400, REMOTE_FILE)
        if check == "call":
            return None
        index = payload.get("fn_index")
        if isinstance(index, bool) or not isinstance(index, int) or index not in self.events:
            return Refusal(404, f"There is no event with that fn_index. The public endpoints are "
                                f"{self._endpoints()}; call them with {CLIENT_HINT}.")
        event = self.events[index]
        if check == "join" and not event.queued:
            return Refusal(404, "That event belongs to the page and is not served through the queue; "
                                f"call a public endpoint with {CLIENT_HINT}.")
        if check == "direct" and event.queued:
            return self.closed()
        return None


def _names_a_remote_file(payload: Any) -> bool:
    """A file object whose path is a URL: Gradio would download it in the hub process
    (whole, into memory and the temp folder) before any input check runs."""
    stack = [payload]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            path, meta = item.get("path"), item.get("meta")
            if (isinstance(meta, dict) and meta.get("_type") == "gradio.FileData" and isinstance(path, str)
                    and path.strip().lower().startswith(("http://", "https://"))):
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _not_found() -> Refusal:
    return Refusal(404, "Not found.")


@dataclass(frozen=True)
class BodyLimits:
    max_body: int
    max_upload: int


class _TooLarge(Exception):
    pass


class DoorRef:
    """The door in force. With --reload the page is rebuilt in the running hub and
    its events with it: the new door replaces the old whole (one assignment)."""

    def __init__(self, door: Door):
        self.current = door


class Gate:
    """ASGI middleware: `Door` verdicts and body limits, answered as JSON
    `{"error": sentence, "detail": sentence}`."""

    def __init__(self, app: Callable, door: Door | DoorRef, limits: BodyLimits):
        self.app = app
        self._door = door if isinstance(door, DoorRef) else DoorRef(door)
        self.limits = limits

    @property
    def door(self) -> Door:
        return self._door.current

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await self.app(scope, receive, send)
        if scope["type"] != "http":
            if scope["type"] == "websocket" and self.door.mcp:
                return await self.app(scope, receive, send)
            await receive()
            return await send({"type": "websocket.close", "code": 1008})
        verdict = self.door.route(scope["method"], scope["path"])
        if isinstance(verdict, Refusal):
            return await answer(send, verdict)
        if scope["method"] in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        limit = self.limits.max_upload if verdict.upload else self.limits.max_body
        too_large = self._too_large(verdict.upload)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            return await answer(send, too_large)
        if verdict.check is None:
            return await self._stream(scope, receive, send, limit, too_large, verdict.upload)
        try:
            body = await _read(receive, limit)
        except _TooLarge:
            return await answer(send, too_large)
        refusal = self.door.check_body(verdict.check, body)
        if refusal is not None:
            return await answer(send, refusal)
        await self.app(scope, _replay(body, receive), send)

    def _too_large(self, upload: bool) -> Refusal:
        if upload:
            size = describe_size(self.limits.max_upload - UPLOAD_OVERHEAD)
            return Refusal(413, f"Uploads are limited to {size} per request; send a smaller file "
                                "(a photo saved as JPEG is usually well under that).")
        size = describe_size(self.limits.max_body)
        return Refusal(413, f"The request is larger than the {size} limit for this route. "
                            "Send images as file uploads (gradio_client.handle_file('photo.jpg')) "
                            "and keep text short.")

    async def _stream(self, scope: Scope, receive: Receive, send: Send, limit: int,
                      too_large: Refusal, upload: bool) -> None:
        """Pass a body through as it arrives, cutting it off at `limit` bytes. Gradio's own
        413 for one file over max_file_size (plain text, in bytes) is answered as ours."""
        seen = 0
        cut = False
        started = False
        replaced = False

        async def counted() -> Message:
            nonlocal seen, cut
            if cut:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    cut = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal started, replaced
            if cut or replaced:
                return  # the app's answer to a body we cut off is replaced by ours
            if upload and message["type"] == "http.response.start" and message["status"] == 413:
                replaced = True
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not cut:
                raise
        if (cut and not started) or replaced:
            await answer(send, too_large)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _read(receive: Receive, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def answer(send: Send, refusal: Refusal) -> None:
    body = json.dumps({"error": refusal.message, "detail": refusal.message}).encode()
    await send({"type": "http.response.start", "status": refusal.status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
