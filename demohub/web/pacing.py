"""Let Gradio's queue rest while nobody is asking.

Gradio's queue polls for work every 1 ms while it is empty, and for progress
every 10 ms: about 2.5 % of a core on this machine for a hub nobody uses
(docs/benchmarks.md, "idle CPU"). After `quiet_after_s` with no request and
nothing queued or running, the pacer slows both polls (5 ms and 100 ms). The
first request after that wakes them at once: the middleware below sees it
before Gradio queues its event, and it waits at most for the rest of one 5 ms
poll. Measured: the idle hub process drops from ~3 % to ~1 % of a core, and the
first answer after a rest is as fast as without resting (20 ms polls saved
another 0.4 % but cost that answer ~10 ms).

Owners: the pacer belongs to the app (`demohub.web.app`); its checking task lives
exactly as long as the app serves (its lifespan), and `wake()` is called from
the server's event loop by the middleware.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from demohub.web import lifespans

#: Paths that never lead to queue work, so they do not wake it (a scrape every 15 s would).
QUIET_PATHS = ("/healthz", "/metrics")
IDLE_POLL_S = 0.005
IDLE_PROGRESS_POLL_S = 0.1
CHECK_EVERY_S = 1.0


class QueuePacer:
    """Switches one Gradio `Queue` between its own poll intervals and slower ones."""

    def __init__(self, queue: Any, quiet_after_s: float = 10.0, idle_poll_s: float = IDLE_POLL_S,
                 idle_progress_poll_s: float = IDLE_PROGRESS_POLL_S):
        self._queue = queue
        self._fast = (queue.sleep_when_free, queue.progress_update_sleep_when_free)
        self._slow = (max(idle_poll_s, self._fast[0]), max(idle_progress_poll_s, self._fast[1]))
        self.quiet_after_s = quiet_after_s
        self._last_request = time.monotonic()

    @property
    def poll_interval(self) -> float:
        """How often the queue looks for new work right now (seconds)."""
        return self._queue.sleep_when_free

    @property
    def resting(self) -> bool:
        return self._queue.sleep_when_free != self._fast[0]

    def wake(self) -> None:
        """A request arrived: poll at Gradio's own pace again."""
        self._last_request = time.monotonic()
        if self.resting:
            self._set(self._fast)

    def check(self, now: float | None = None) -> None:
        """Rest when nothing arrived for `quiet_after_s` and nothing is queued or running."""
        now = time.monotonic() if now is None else now
        if self.resting or self.quiet_after_s <= 0 or now - self._last_request < self.quiet_after_s:
            return
        if len(self._queue) == 0 and all(job is None for job in self._queue.active_jobs):
            self._set(self._slow)

    def _set(self, intervals: tuple[float, float]) -> None:
        self._queue.sleep_when_free, self._queue.progress_update_sleep_when_free = intervals

    def lifespan(self, inner: Callable) -> Callable:
        """Wrap an app lifespan with the task that calls `check()` every second."""
        return lifespans.every(CHECK_EVERY_S, self.check)(inner)


class WakeOnRequest:
    """ASGI middleware: every HTTP request (but health checks and scrapes) wakes the queue."""

    def __init__(self, app: Callable, pacer: QueuePacer):
        self.app = app
        self.pacer = pacer

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] in ("http", "websocket") and scope.get("path") not in QUIET_PATHS:
            self.pacer.wake()
        await self.app(scope, receive, send)
