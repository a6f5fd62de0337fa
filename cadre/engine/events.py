"""The event bus: every event of an execution is stored, numbered, then fanned out live.

A subscriber names the last sequence number it has seen and gets everything
after it, in order, exactly once: from memory while the execution runs in this
process, from the database otherwise (finished executions, or ones another
worker runs, which it polls).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from cadre.db_calls import DatabaseCalls
from storage import executions as store

log = logging.getLogger("cadre.engine")

Event = dict[str, Any]


class Channel:
    """The live events of one running execution."""

    def __init__(self, execution_id: str, last_seq: int = 0) -> None:
        self.execution_id = execution_id
        self.base = last_seq  # events[i] has seq base + i + 1
        self.events: list[Event] = []
        self.done = False
        self.held: int | None = None  # events from this index on are not shown yet
        self._changed = asyncio.Event()

    @property
    def last_seq(self) -> int:
        return self.base + len(self.events)

    def after(self, seq: int) -> list[Event]:
        end = len(self.events) if self.held is None else self.held
        return self.events[max(0, seq - self.base) : end]

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, timeout: float | None) -> bool:
        """Wait for the next change; False when ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            return False
        return True


class EventBus:
    """Events reach live subscribers at once and the database in small batches.

    Writing each token on its own costs more than streaming it; events published
    within ``flush_delay`` seconds are written together, and always before an
    execution's channel closes.

    Batches are written through ``db``: inline on SQLite, as soon as ``flush`` is
    called; on PostgreSQL in a worker thread, one batch at a time and in order
    (``_writing`` holds the write under way; each new one waits for the one before).
    ``drain`` waits until everything published so far is stored: ``close`` and
    ``detach`` drain first, so replays from the database never miss an event.
    """

    def __init__(
        self,
        poll_interval: float = 0.25,
        flush_delay: float = 0.01,
        db: DatabaseCalls | None = None,
    ) -> None:
        self.channels: dict[str, Channel] = {}
        self.poll_interval = poll_interval
        self.flush_delay = flush_delay
        self.db = db or DatabaseCalls()
        self._pending: list[tuple[str, int, str, Event]] = []
        self._progress: dict[str, dict[str, Any]] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self._writing: asyncio.Future[None] | None = None  # the last batch handed to a thread

    def flush(self) -> None:
        """Write every pending event, and the progress noted with them, now (inline), or
        hand them to the writer thread after the batches before them (``drain`` waits)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._pending or self._progress:
            pending, self._pending = self._pending, []
            progress, self._progress = self._progress, {}
            if self.db.inline:
                store.append_events(pending, progress)
            else:
                self._writing = asyncio.ensure_future(self._write(self._writing, pending, progress))

    async def _write(
        self,
        before: asyncio.Future[None] | None,
        pending: list[tuple[str, int, str, Event]],
        progress: dict[str, dict[str, Any]],
    ) -> None:
        if before is not None:
            await asyncio.shield(before)  # in order: the batch before is stored first
        try:
            await asyncio.shield(self.db(store.append_events, pending, progress))
        except Exception:  # as a failed write from ``call_later`` is: logged, not raised
            log.exception("writing %d events failed", len(pending))

    async def drain(self) -> None:
        """Flush, and wait until every event published so far is stored."""
        self.flush()
        writing = self._writing
        if writing is not None:
            await asyncio.shield(writing)
            if self._writing is writing:
                self._writing = None

    def progress(self, execution_id: str, **fields: Any) -> None:
        """Columns of the execution to write with its next batch of events (usage so far):
        stored no later than the events that follow this call, so a crash loses neither."""
        self._progress[execution_id] = fields
        self._schedule_flush()

    def drop_progress(self, execution_id: str) -> None:
        """Forget unwritten progress (its owner writes the final values itself)."""
        self._progress.pop(execution_id, None)

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(self.flush_delay, self.flush)

    def open(self, execution_id: str) -> Channel:
        channel = self.channels.get(execution_id)
        if channel is None:
            channel = Channel(execution_id, store.last_seq(execution_id))
            self.channels[execution_id] = channel
        return channel

    async def attach(self, execution_id: str) -> Channel:
        """``open``, its database read sent through ``db`` (call before publishing from
        async code, so that ``publish`` finds the channel open)."""
        channel = self.channels.get(execution_id)
        if channel is None:
            await self.drain()  # the last sequence number stored is the last published
            last_seq = await self.db(store.last_seq, execution_id)
            channel = self.channels.get(execution_id)
            if channel is None:
                channel = Channel(execution_id, last_seq)
                self.channels[execution_id] = channel
        return channel

    def publish(self, execution_id: str, type_: str, **data: Any) -> Event:
        """Store the event, then wake every live subscriber."""
        channel = self.open(execution_id)
        event: Event = {
            "type": type_,
            "execution_id": execution_id,
            "seq": channel.last_seq + 1,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            **data,
        }
        self._pending.append((execution_id, event["seq"], type_, event))
        self._schedule_flush()
        channel.events.append(event)
        channel.notify()
        return event

    def hold(self, execution_id: str) -> None:
        """Keep the events published from now on from live subscribers until ``close``
        (after they are stored): an execution's last events, so that whoever gets
        ``complete`` finds the end it announces stored. Call after ``attach``."""
        channel = self.open(execution_id)
        channel.held = len(channel.events)

    async def close(self, execution_id: str) -> None:
        """The execution is over: its events are stored, then live subscribers drain and
        stop; new ones read the database."""
        await self.drain()
        channel = self.channels.pop(execution_id, None)
        if channel is not None:
            channel.held = None
            channel.done = True
            channel.notify()

    async def detach(self, execution_id: str) -> None:
        """The execution stops here without ending (awaiting an approval, or this worker
        shutting down): its events are written, and live subscribers go on following it
        from the database, wherever it continues."""
        await self.drain()
        channel = self.channels.pop(execution_id, None)
        if channel is not None:
            channel.held = None
            channel.notify()

    async def subscribe(
        self, execution_id: str, after: int = 0, keepalive: float | None = None
    ) -> AsyncIterator[Event | None]:
        """Every event after ``after`` until the execution ends; ``None`` marks idle time.

        With ``keepalive`` set, a ``None`` is yielded after that many idle seconds.
        """
        cursor = after
        idle = 0.0
        while True:
            channel = self.channels.get(execution_id)
            if channel is not None:
                batch = channel.after(cursor)
                for event in batch:
                    cursor = event["seq"]
                    yield event
                    if event["type"] == "complete":
                        return
                if channel.done and cursor >= channel.last_seq:
                    return
                if not batch and not await channel.wait(keepalive):
                    yield None
                continue
            # Not running in this process: read the database, polling while unfinished.
            rows = await self.db(store.events_after, execution_id, cursor, 500)
            for row in rows:
                cursor = row.seq
                yield row.data
                if row.type == "complete":
                    return
            if rows:
                idle = 0.0
                continue
            if execution_id in self.channels:
                continue
            if await self.db(store.get_status, execution_id) in store.TERMINAL:
                if not await self.db(store.events_after, execution_id, cursor, 1):
                    return
                continue
            await asyncio.sleep(self.poll_interval)
            idle += self.poll_interval
            if keepalive is not None and idle >= keepalive:
                idle = 0.0
                yield None
