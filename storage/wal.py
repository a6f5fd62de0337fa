"""SQLite's write-ahead log, checkpointed off the event loop.

A commit that finds the log past ``wal_autocheckpoint`` pages copies it back into the
database file and syncs that, in the committing connection. Cadre's SQLite writes run on
the event loop (``cadre.db_calls``), so every such checkpoint stalled every stream: with
1,000 streams rewriting their executions' rows, batches of 50 events took 0.4 ms at the
median and 20 ms at the 99th percentile, the checkpoints. ``Checkpointer`` runs them in a
thread instead, on its own connection, every ``interval`` seconds and PASSIVE (it never
waits for a reader or a writer); the loop's connections keep an autocheckpoint only as a
backstop, far above what a second of writes fills (``WAL_BACKSTOP_PAGES``), for when no
checkpointer runs (the CLI, tests without the app).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3

log = logging.getLogger("cadre.storage")

WAL_BACKSTOP_PAGES = 20_000  # 80 MB of 4 KB pages
CHECKPOINT_SECONDS = 0.5


class Checkpointer:
    """Checkpoints the SQLite file at ``path`` every ``interval`` seconds, in a thread."""

    def __init__(self, path: str, interval: float = CHECKPOINT_SECONDS) -> None:
        self.path = path
        self.interval = interval
        self._connection: sqlite3.Connection | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop after the checkpoint under way, if any, and close the connection."""
        self._stop.set()
        if self._task is not None:
            await self._task
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval)
                return
            except TimeoutError:
                pass
            try:
                await asyncio.to_thread(self.checkpoint)
            except sqlite3.Error:  # the next one tries again; the backstop still holds
                log.exception("checkpointing %s failed", self.path)

    def checkpoint(self) -> tuple[int, int, int]:
        """One PASSIVE checkpoint: ``(busy, pages in the log, pages checkpointed)``."""
        if self._connection is None:
            self._connection = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None
            )
        return self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
