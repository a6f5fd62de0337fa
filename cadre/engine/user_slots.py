"""``CADRE_MAX_CONCURRENT_EXECUTIONS_PER_USER`` across every worker (PostgreSQL).

Slot ``i`` of a user is the PostgreSQL advisory lock ``(user key, i)``, taken with
``pg_try_advisory_lock`` on a connection of this worker's own: a running execution holds
one, so at most ``cap`` of one user's executions run at once in all workers together.
Locks belong to their connection, so a worker that dies frees its slots with it, and
no slot outlives its holder. A run that finds no slot free polls again (fairness between
workers is not FIFO; within a worker the ``Scheduler`` still keeps its order). Two users
whose keys collide (a 32-bit hash) would share slots: rare, and only ever stricter.
"""

from __future__ import annotations

import asyncio
import logging
import zlib

import psycopg

log = logging.getLogger("cadre.engine")

POLL_SECONDS = 0.1


def _key(owner: str) -> int:
    return zlib.crc32(owner.encode()) - 2**31  # a signed int4, as the two-key form takes


class UserSlots:
    def __init__(self, conninfo: str, cap: int) -> None:
        self.conninfo = conninfo
        self.cap = cap
        self._connection: psycopg.AsyncConnection | None = None
        self._lock = asyncio.Lock()  # one statement at a time on the connection
        self._held: set[tuple[str, int]] = set()  # locks stack per session: track ours

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()  # every slot it held is free again
            self._connection = None
        self._held.clear()

    async def take(self, owner: str) -> int:
        """Wait for a free slot of ``owner`` and hold it; returns its number."""
        while True:
            slot = await self.try_take(owner)
            if slot is not None:
                return slot
            await asyncio.sleep(POLL_SECONDS)

    async def try_take(self, owner: str) -> int | None:
        """A free slot of ``owner``, now held; None when all are taken."""
        attempt = asyncio.ensure_future(self._try(owner))
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            slot = await attempt  # it may have taken one: give it back
            if slot is not None:
                await self.give_back(owner, slot)
            raise

    async def give_back(self, owner: str, slot: int) -> None:
        async with self._lock:
            if (owner, slot) not in self._held:
                return
            self._held.discard((owner, slot))
            try:
                connection = await self._connect()
                await connection.execute("SELECT pg_advisory_unlock(%s, %s)", (_key(owner), slot))
            except psycopg.Error:  # the connection is gone, and its locks with it
                log.warning("giving back a slot of %s failed", owner, exc_info=True)

    async def _try(self, owner: str) -> int | None:
        async with self._lock:
            try:
                connection = await self._connect()
                for slot in range(self.cap):
                    if (owner, slot) in self._held:
                        continue
                    cursor = await connection.execute(
                        "SELECT pg_try_advisory_lock(%s, %s)", (_key(owner), slot)
                    )
                    row = await cursor.fetchone()
                    if row is not None and row[0]:
                        self._held.add((owner, slot))
                        return slot
            except psycopg.Error:  # reconnect on the next try; held slots went with it
                log.warning("taking a slot of %s failed", owner, exc_info=True)
                if self._connection is not None and self._connection.closed:
                    self._connection = None
                    self._held.clear()
            return None

    async def _connect(self) -> psycopg.AsyncConnection:
        if self._connection is None or self._connection.closed:
            self._connection = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
            self._held.clear()
        return self._connection
