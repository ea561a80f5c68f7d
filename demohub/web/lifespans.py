"""Periodic chores that live exactly as long as the app serves.

Each is one asyncio task started when the app starts and cancelled when it
stops, wrapped around the app's own lifespan (FastAPI/Starlette), so no chore
outlives the server and none needs a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Callable

import anyio


def every(seconds: float, chore: Callable[[], object], *, in_thread: bool = False) -> Callable:
    """A lifespan wrapper running `chore()` every `seconds`; `in_thread` for a
    chore that blocks (file system, malloc_trim), so the event loop never waits on it."""

    async def forever() -> None:
        while True:
            await asyncio.sleep(seconds)
            if in_thread:
                await anyio.to_thread.run_sync(chore)
            else:
                chore()

    def wrap(inner: Callable | None) -> Callable:
        @contextlib.asynccontextmanager
        async def wrapped(app):
            task = asyncio.create_task(forever())
            try:
                if inner is None:
                    yield None
                else:
                    async with inner(app) as state:
                        yield state
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        return wrapped

    return wrap
