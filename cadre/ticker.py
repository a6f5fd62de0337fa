"""One timer for the periodic work of every open stream.

Each WebSocket stream checks its token again every second. With a sleep of its own, each
stream armed a timer (under uvloop a libuv handle, made and closed) and 1,000 open streams
kept 1,000 of them. A ``Ticker`` keeps one timer for all, armed only while someone waits:
the waiters of one tick wake together.
"""

from __future__ import annotations

import asyncio


class Ticker:
    """``await ticker.tick()`` returns at the next tick; ticks come every ``seconds`` while
    anyone waits for one (a waiter that arrives between two ticks waits less)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._next: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the one its timer runs on

    async def tick(self) -> None:
        loop = asyncio.get_running_loop()
        if self._next is None or loop is not self._loop:  # an app's loop may be replaced
            self._next, self._loop = asyncio.Event(), loop
            loop.call_later(self.seconds, self._fire, self._next)
        await self._next.wait()

    def _fire(self, due: asyncio.Event) -> None:
        if self._next is due:
            self._next = None
        due.set()
