"""Fair queueing: at most `--per-client-queue` jobs waiting or running per visitor.

Gradio's queue is first come, first served and bounded as a whole (`--queue-size`):
one visitor who sends 200 jobs fills it, and for those seconds everyone else is told
"Queue is full". Gradio has no per-client limit, so this middleware sits in front of
its queue: a join from a visitor who already holds `limit` jobs is refused at once,
with a sentence that says how many they have, and never reaches the queue.

A visitor is the client's address, not a session (a new client per job gets a new
session). The address is `scope["client"]`, which uvicorn's ProxyHeadersMiddleware
(added in `demohub.web.app`) has taken from `X-Forwarded-For` when, and only when, the
connection came from a proxy named by `--forwarded-allow-ips`. An IPv6 visitor is
its /64, since one host is normally given a whole /64.

Counting down: a job counts from its join until Gradio's queue forgets its event id
(`Queue.event_ids_to_events`), which Gradio does however the job ends: completed,
raised, timed out, cancelled (`/cancel`), or its client gone (a waiting job is taken
out of the queue; a running one ends when its call does). The count is read back
from that record at every join, so no ending path can leave a visitor counted
forever, as a counter decremented by hooks would if one path were missed.

Owners: the ledger belongs to the middleware (one per app); both run on the server's
event loop and every change happens between two awaits, so no lock is needed.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from demohub import events
from demohub.web.gate import API, Receive, Refusal, Scope, Send, answer

#: Routes that put a job in Gradio's queue: the page's and gradio_client's join, and
#: the `/call/<name>` API (which joins the same queue).
_JOINS = re.compile(r"^(queue/join|call/(?:v2/)?[^/]+)/?$")
REASONS = ("per_visitor", "queue_full")
#: Visitors whose reaching the limit is logged and not yet followed by an admitted job; past
#: this many the set starts again (the cost: a repeated log line, never a missed refusal).
TOLD_MAX = 1024


def visitor(host: str | None) -> str:
    """Whose jobs these are: the address (IPv4, or IPv4 mapped into IPv6), an IPv6 /64,
    or, for what is not an address (a unix socket), the name itself."""
    if not host:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:100]
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def decide(holding: int, limit: int) -> Refusal | None:
    """Refuse a join when the visitor already holds `limit` jobs; 0 means no limit."""
    if limit <= 0 or holding < limit:
        return None
    jobs = "job" if holding == 1 else "jobs"
    return Refusal(429, f"You already have {holding} {jobs} waiting or running on this hub, the most one "
                        "visitor may have at a time. Wait for one of them to finish, then send the next.")


@dataclass
class _Join:
    """A join being answered: it holds a place until Gradio answers with its event id."""

    who: str
    open: bool = True


class Ledger:
    """Each visitor's jobs: the event ids Gradio accepted for them, and their joins still
    being answered (so 200 joins sent at once cannot all pass before the first is queued)."""

    def __init__(self) -> None:
        self._events: dict[str, set[str]] = {}
        self._joining: Counter[str] = Counter()

    def holding(self, who: str, live: Callable[[str], bool]) -> int:
        """`who`'s jobs that are still waiting or running. Forgets every ended job of every
        visitor on the way, so the ledger holds little more than the queue does."""
        for name in list(self._events):
            ids = {event_id for event_id in self._events[name] if live(event_id)}
            if ids:
                self._events[name] = ids
            else:
                del self._events[name]
        return len(self._events.get(who, ())) + self._joining[who]

    def reserve(self, who: str) -> _Join:
        self._joining[who] += 1
        return _Join(who)

    def admit(self, join: _Join, event_id: str | None) -> None:
        """Gradio queued the job: its event id holds the place from now on."""
        self.release(join)
        if event_id:
            self._events.setdefault(join.who, set()).add(event_id)

    def release(self, join: _Join) -> None:
        if join.open:
            join.open = False
            self._joining[join.who] -= 1
            if not self._joining[join.who]:
                del self._joining[join.who]


class FairQueue:
    """ASGI middleware: the per-visitor limit on queue joins, and the refusals counted
    per reason (`refused("per_visitor")` here, `refused("queue_full")` when Gradio's
    whole queue refused one). A visitor reaching the limit is one `per_visitor_limit`
    log line with the address it is known by (how a Space owner checks which address
    the hub sees: the visitor's, or a proxy's)."""

    def __init__(self, app: Callable, limit: int, live: Callable[[str], bool],
                 refused: Callable[[str], None] = lambda reason: None):
        self.app = app
        self.limit = limit
        self.live = live
        self.refused = refused
        self.ledger = Ledger()
        self._told: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (scope["type"] != "http" or scope["method"] != "POST" or not path.startswith(API)
                or not _JOINS.match(path[len(API):])):
            return await self.app(scope, receive, send)
        who = visitor((scope.get("client") or (None,))[0])
        refusal = decide(self.ledger.holding(who, self.live), self.limit)
        if refusal is not None:
            self.refused("per_visitor")
            if who not in self._told:  # one log line each time a visitor reaches the limit, not one per job
                if len(self._told) >= TOLD_MAX:
                    self._told.clear()
                self._told.add(who)
                events.event("per_visitor_limit", visitor=who, jobs=self.limit)
            return await answer(send, refusal)
        self._told.discard(who)
        join = self.ledger.reserve(who)  # no await since the check: nothing else joined in between
        status, body = 0, []

        async def watch(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status == 200:
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self.ledger.admit(join, _event_id(b"".join(body)))
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.ledger.release(join)  # refused, failed or cut off before Gradio answered
            if status == 503:
                self.refused("queue_full")


def _event_id(body: bytes) -> str | None:
    try:
        event_id = json.loads(body).get("event_id")
    except (ValueError, AttributeError):
        return None
    return event_id if isinstance(event_id, str) else None
