"""Where blocking database calls run: inline on SQLite, in the threadpool on PostgreSQL.

Peewee is synchronous, and a blocking call on the event loop stalls every request of
the worker (``/health`` included) for as long as it lasts. How long is what decides:

* SQLite is embedded: a query reads a local file in-process and takes microseconds
  (a page of 100 agents, about a millisecond). Handing it to a worker thread costs
  more than that (a thread switch each way, the GIL handed over, the reply waited for):
  on the event loop it is cheaper, and no slower for anyone else.
* PostgreSQL is a server: every query is a network round trip, and a write may wait
  for a row lock another transaction holds, for as long as it holds it. On the event
  loop that wait would be everyone's; in a worker thread it is only its request's.

So the rule, decided once from the database URL when the app is built: handlers whose
work is only database work are plain ``def`` functions, which the binder
(``cadre.connexion.binding``) calls through ``DatabaseCalls``; handlers that need the
event loop (they await the executor or the password hasher) stay ``async`` and send
their storage calls through the same ``DatabaseCalls`` (the ``db`` service):
``await db(store.get_execution, execution_id, user)``. A worker thread gives its
pooled connection back when each call ends (``storage.db.release``).

The token check of each request, and of each open stream every second, reads the
database in a worker thread as well when a read is due (``TokenService.authenticate``,
``TokenService.recheck``). The engine does the same: the executor, its runs, the
supervisor and the event bus are given this service and send their storage calls through
it (the bus writes its batches one at a time, in order, see ``EventBus``).

Inline calls are cheap one by one, but not a burst of them: a thousand runs starting or
ending in the same second each store a few rows (about 3.5 ms of SQLite work a run), and
had those calls all run in one turn of the loop, every other stream's frames would wait
for them all. So the inline calls of one turn of the loop stop once they have taken
``turn_seconds`` (``TurnBudget``; ``CADRE_INLINE_DB_MS_PER_TURN``): the others wait for
the next turns, in the order they were made, and the frames ready meanwhile go out between
them. Waiting is what a call on PostgreSQL does anyway (it awaits a thread), so no caller
can tell; and a turn's first call always runs, so every call gets its turn.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from starlette.concurrency import run_in_threadpool

from storage import db as storage_db

P = ParamSpec("P")
T = TypeVar("T")
DEFAULT_TURN_SECONDS = 0.005


def _released(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return function(*args, **kwargs)
    finally:
        storage_db.release()


class TurnBudget:
    """Takers of one turn of the event loop share ``seconds`` (each reports what it took
    with ``spend``); past that the others wait, first come first served, for later turns.
    A turn's first taker always goes: with ``seconds`` at 0, one taker a turn."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._spent = 0.0  # by this turn's takers
        self._takers = 0  # in this turn
        self._cost = 0.0  # a taker's usual time (moving average): how many to wake a turn
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._turning = False  # ``_next_turn`` is scheduled

    async def take(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (tests run several): nothing carries over
            self._loop, self._waiters, self._turning = loop, deque(), False
            self._spent, self._takers = 0.0, 0
        if not self._waiters and (self._takers == 0 or self._spent < self.seconds):
            self._takers += 1
            self._schedule(loop)
            return
        waiter = loop.create_future()
        self._waiters.append(waiter)
        self._schedule(loop)
        await waiter

    def spend(self, seconds: float) -> None:
        self._spent += seconds
        self._cost += (seconds - self._cost) / 16

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._turning:
            self._turning = True
            loop.call_soon(self._next_turn)  # runs in the next turn: callbacks made now wait

    def _next_turn(self) -> None:
        """A new turn: wake as many waiters as usually fit in ``seconds`` (one at least).
        They run in the turn after, which is full for newcomers: those queue behind them
        (and so never overtake them)."""
        self._turning = False
        self._spent, self._takers = 0.0, 0
        room = max(1, int(self.seconds / self._cost)) if self._cost > 0 else 1
        woken = 0
        while self._waiters and woken < room:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled waiter gives its place up
                waiter.set_result(None)
                woken += 1
        if woken:
            self._spent, self._takers = self.seconds, woken
            assert self._loop is not None
            self._schedule(self._loop)


class DatabaseCalls:
    """``await calls(function, *args)``: ``function(*args)`` where database calls belong."""

    def __init__(
        self, database_url: str | None = None, turn_seconds: float = DEFAULT_TURN_SECONDS
    ) -> None:
        """Inline for SQLite, and when no URL is given (engine parts built without one);
        inline, calls of one turn of the loop stop after ``turn_seconds``."""
        self.inline = database_url is None or storage_db.is_embedded(database_url)
        self.budget = TurnBudget(turn_seconds)

    async def __call__(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self.inline:
            await self.budget.take()
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.budget.spend(time.perf_counter() - started)
        return await run_in_threadpool(_released, function, *args, **kwargs)
