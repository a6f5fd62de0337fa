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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from starlette.concurrency import run_in_threadpool

from storage import db as storage_db

P = ParamSpec("P")
T = TypeVar("T")


def _released(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return function(*args, **kwargs)
    finally:
        storage_db.release()


class DatabaseCalls:
    """``await calls(function, *args)``: ``function(*args)`` where database calls belong."""

    def __init__(self, database_url: str | None = None) -> None:
        """Inline for SQLite, and when no URL is given (engine parts built without one)."""
        self.inline = database_url is None or storage_db.is_embedded(database_url)

    async def __call__(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self.inline:
            return function(*args, **kwargs)
        return await run_in_threadpool(_released, function, *args, **kwargs)
