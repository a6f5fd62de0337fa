"""The event bus: every event of an execution is stored, numbered, then fanned out live.

A subscriber names the last sequence number it has seen and gets everything
after it, in order, exactly once: from memory while the execution runs in this
process (its latest ``history`` events, each encoded once for every subscriber), from
the database otherwise (older events, finished executions, or ones another worker
runs). An execution another worker runs is followed live through its Redis stream
when there is one (``cadre.engine.fanout``), else by polling the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import orjson

from cadre.db_calls import DatabaseCalls
from storage import executions as store
from storage.ids import utcnow_text

if TYPE_CHECKING:  # Redis's client loads only when CADRE_REDIS_URL is set
    from cadre.engine.fanout import Fanout

log = logging.getLogger("cadre.engine")

Event = dict[str, Any]
Frame = tuple[Event, str]  # an event and its JSON text, encoded once for every subscriber
DEFAULT_HISTORY = 32
BUSY_BATCH = 64  # events in a batch that show a busy bus: the next one waits longer
READ_BATCH = 500
GATHER_TURNS = 4  # see ``_while_growing``


def encode(event: Event) -> str:
    """An event's JSON text, as it is stored and sent (compact, UTF-8 as is)."""
    return orjson.dumps(event).decode()


class Channel:
    """The live events of one running execution: the last ``history`` of them, each with
    its encoded text; older ones are read back from the database.

    Subscribers wait on futures woken by ``notify`` (no task, and no timer per event): a
    waiter with a timeout shares the channel's one timer, set for the earliest deadline.
    """

    def __init__(self, execution_id: str, last_seq: int = 0, history: int = DEFAULT_HISTORY):
        self.execution_id = execution_id
        self.last_seq = last_seq
        self.frames: deque[Frame] = deque(maxlen=history)
        self.done = False
        self._waiters: list[asyncio.Future[bool]] = []
        self._timer: asyncio.TimerHandle | None = None
        self.held: int | None = None  # events after this seq are not shown yet

    @property
    def first_seq(self) -> int:
        """The oldest sequence number still in memory (``last_seq + 1`` when none is)."""
        return self.last_seq - len(self.frames) + 1

    def append(self, event: Event, text: str) -> None:
        self.frames.append((event, text))
        self.last_seq = event["seq"]

    def after(self, seq: int) -> list[Frame]:
        """The frames after ``seq`` (up to ``held``), all in memory (the caller checked
        ``first_seq``)."""
        first, frames = self.first_seq, self.frames
        start = max(0, seq - first + 1)
        end = len(frames) if self.held is None else self.held - first + 1
        return [frames[i] for i in range(start, end)]

    def notify(self) -> None:
        self._wake(True)

    def _wake(self, changed: bool) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(changed)

    def _tick(self) -> None:
        self._timer = None
        self._wake(False)

    async def wait(self, timeout: float | None) -> bool:
        """Wait for the next change; False when ``timeout`` passed first."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if deadline is not None and (self._timer is None or self._timer.when() > deadline):
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = loop.call_at(deadline, self._tick)
            waiter = loop.create_future()
            self._waiters.append(waiter)
            if await waiter:
                return True
            if deadline is not None and loop.time() >= deadline:
                return False


class EventBus:
    """Events reach live subscribers at once and the database in small batches.

    Writing each token on its own costs more than streaming it; events published
    within ``flush_delay`` seconds are written together, and always before an
    execution's channel closes. After a batch of ``BUSY_BATCH`` events or more, the
    next waits ``busy_flush_delay``: each batch rewrites the row of every execution in
    it (its usage so far), so under load fewer, larger batches cost much less per
    event. Live subscribers do not wait for either: they get each event as published.

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
        busy_flush_delay: float = 0.05,
        db: DatabaseCalls | None = None,
        fanout: Fanout | None = None,
        history: int = DEFAULT_HISTORY,
    ) -> None:
        self.channels: dict[str, Channel] = {}
        self.fanout = fanout  # every event goes to Redis too, for other processes
        self.history = history
        self.poll_interval = poll_interval
        self.flush_delay = flush_delay
        self.busy_flush_delay = busy_flush_delay
        self._busy = False  # the last batch was large: wait ``busy_flush_delay``
        self.db = db or DatabaseCalls()
        self._pending: list[tuple[str, int, str, str]] = []
        self._progress: dict[str, dict[str, Any]] = {}
        self._writes: dict[str, list[Callable[[], Any]]] = {}  # see ``progress``
        self._tracked: dict[str, Callable[[], dict[str, Any]]] = {}  # see ``track``
        self._flush_handle: asyncio.TimerHandle | None = None
        self._writing: asyncio.Future[None] | None = None  # the last batch handed to a thread
        self._draining: asyncio.Future[None] | None = None  # the flush drains wait for
        self.fenced: set[str] = set()  # runs whose progress was refused: adopted elsewhere

    def flush(self) -> None:
        """Write every pending event, and the progress noted with them, now (inline), or
        hand them to the writer thread after the batches before them (``drain`` waits)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._pending or self._progress or self._writes:
            pending, self._pending = self._pending, []
            progress, self._progress = self._progress, {}
            writes, self._writes = self._writes, {}
            self._busy = len(pending) >= BUSY_BATCH
            if self._tracked:  # read once a batch for the executions with events in it
                for execution_id in {item[0] for item in pending}:
                    usage = self._tracked.get(execution_id)
                    if usage is not None:
                        progress.setdefault(execution_id, {}).update(usage())
            if self.db.inline:
                self.fenced |= store.append_events(pending, progress, writes)
            else:
                self._writing = asyncio.ensure_future(
                    self._write(self._writing, pending, progress, writes)
                )

    async def _write(
        self,
        before: asyncio.Future[None] | None,
        pending: list[tuple[str, int, str, str]],
        progress: dict[str, dict[str, Any]],
        writes: dict[str, list[Callable[[], Any]]],
    ) -> None:
        if before is not None:
            await asyncio.shield(before)  # in order: the batch before is stored first
        try:
            written = self.db(store.append_events, pending, progress, writes)
            self.fenced |= await asyncio.shield(written)
        except Exception:  # as a failed write from ``call_later`` is: logged, not raised
            log.exception("writing %d events failed", len(pending))

    async def drain(self) -> None:
        """Flush, and wait until every event published so far is stored. The drains asked
        in one turn of the loop share one flush, at its end: runs ending together (each
        closing its channel) write one batch, not one small transaction each."""
        if self._pending or self._progress or self._writes:
            if self._draining is None:
                loop = asyncio.get_running_loop()
                self._draining = loop.create_future()
                loop.call_soon(self._flush_for_drains)
            await asyncio.shield(self._draining)
        writing = self._writing
        if writing is not None:
            await asyncio.shield(writing)
            if self._writing is writing:
                self._writing = None

    def _flush_for_drains(self) -> None:
        draining, self._draining = self._draining, None
        if draining is None:
            return
        try:
            self.flush()
        except Exception as exc:  # each drain raises it, as a flush of its own would
            draining.set_exception(exc)
        else:
            draining.set_result(None)

    def progress(self, execution_id: str, *writes: Callable[[], Any], **fields: Any) -> None:
        """Columns of the execution to write with its next batch of events (usage so far,
        or its terminal state), and ``writes`` of its to run in that batch's transaction
        (a run's last step, stored with its end in one transaction): stored no later than
        the events that follow this call, so a crash loses neither. Columns noted again
        replace the unwritten values; writes add up, in order."""
        self._progress.setdefault(execution_id, {}).update(fields)
        if writes:
            self._writes.setdefault(execution_id, []).extend(writes)
        self._schedule_flush()

    def track(self, execution_id: str, usage: Callable[[], dict[str, Any]]) -> None:
        """``progress`` for columns that change with every event (a call's usage so far):
        ``usage()`` is noted now, then read again whenever a batch with events of the
        execution is written (once a batch, not once an event), until ``drop_progress``.
        It must already count the events published before each read."""
        self._tracked[execution_id] = usage
        self.progress(execution_id, **usage())

    def drop_progress(self, execution_id: str) -> None:
        """Forget unwritten progress, and stop ``track``ing (its owner writes the final
        values itself)."""
        self._progress.pop(execution_id, None)
        self._tracked.pop(execution_id, None)

    def abandon(self, execution_id: str) -> None:
        """The execution was adopted by another worker: forget what this one has not written
        of it (events, progress) and let its live subscribers follow it from the database."""
        self._pending = [item for item in self._pending if item[0] != execution_id]
        self._progress.pop(execution_id, None)
        self._writes.pop(execution_id, None)
        self._tracked.pop(execution_id, None)
        self.fenced.discard(execution_id)
        channel = self.channels.pop(execution_id, None)
        if channel is not None:
            channel.held = None
            channel.notify()

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            delay = self.busy_flush_delay if self._busy else self.flush_delay
            self._flush_handle = asyncio.get_running_loop().call_later(delay, self.flush)

    def open(self, execution_id: str) -> Channel:
        channel = self.channels.get(execution_id)
        if channel is None:
            channel = Channel(execution_id, store.last_seq(execution_id), self.history)
            self.channels[execution_id] = channel
        return channel

    def begin(self, execution_id: str) -> Channel:
        """``open`` for an execution just created, which cannot have events yet: no read."""
        channel = self.channels.get(execution_id)
        if channel is None:
            channel = self.channels[execution_id] = Channel(execution_id, 0, self.history)
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
                channel = Channel(execution_id, last_seq, self.history)
                self.channels[execution_id] = channel
        return channel

    def publish(self, execution_id: str, type_: str, **data: Any) -> Event:
        """Store the event, then wake every live subscriber; it is encoded once, here."""
        channel = self.channels.get(execution_id) or self.open(execution_id)
        seq = channel.last_seq + 1
        event: Event = {
            "type": type_,
            "execution_id": execution_id,
            "seq": seq,
            "timestamp": utcnow_text(),
            **data,
        }
        text = encode(event)
        self._pending.append((execution_id, seq, type_, text))
        if self._flush_handle is None:
            self._schedule_flush()
        if self.fanout is not None:
            self.fanout.append(event)
        channel.append(event, text)
        channel.notify()
        return event

    def hold(self, execution_id: str) -> None:
        """Keep the events published from now on from live subscribers until ``close``
        (after they are stored): an execution's last events, so that whoever gets
        ``complete`` finds the end it announces stored. Call after ``attach``."""
        channel = self.open(execution_id)
        channel.held = channel.last_seq

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
        async for frames in self.follow(execution_id, after, keepalive):
            if not frames:
                yield None
            for event, _ in frames:
                yield event

    async def follow(
        self, execution_id: str, after: int = 0, keepalive: float | None = None
    ) -> AsyncIterator[list[Frame]]:
        """``subscribe`` in batches of encoded events: all those ready at once, in order
        (an empty batch marks idle time), so a relay that fell behind can send them
        together. Events no longer in the channel's memory are read from the database."""
        cursor = after
        idle = 0.0
        redis_failed = False
        streaming = False  # the Redis stream is unbroken so far: no need to read the database
        held: Channel | None = None  # the channel followed last, closed or detached since
        while True:
            channel = self.channels.get(execution_id)
            live = channel is not None
            if not live and held is not None and held.last_seq > cursor:
                channel = held  # its last events are still in memory: no database read
            if channel is not None and cursor + 1 >= channel.first_seq:
                held = channel
                batch = channel.after(cursor)
                if batch:
                    batch, ended = _through_complete(batch)
                    cursor = batch[-1][0]["seq"]
                    yield batch
                    if ended:
                        return
                    continue
                if channel.done:
                    return
                if live:
                    if not await channel.wait(keepalive):
                        yield []
                    else:
                        await _while_growing(channel)
                    continue
            held = None
            if live:
                await self.drain()  # the events it fell behind on are stored first
            if live:
                streaming = False
            rows = (
                []
                if streaming
                else await self.db(store.events_after, execution_id, cursor, READ_BATCH)
            )
            if rows:
                batch, ended = _through_complete([(row.data, encode(row.data)) for row in rows])
                cursor = batch[-1][0]["seq"]
                yield batch
                if ended:
                    return
                idle = 0.0
                continue
            if live and channel is not None:  # its write failed (logged): go on with the rest
                log.warning(
                    "events %d-%d of %s were lost", cursor + 1, channel.first_seq - 1, execution_id
                )
                cursor = channel.first_seq - 1
                continue
            if execution_id in self.channels:
                continue
            if self.fanout is not None and not redis_failed:
                block = self.fanout.max_block_seconds
                wait = block if keepalive is None else min(keepalive, block)
                followed = await self.fanout.follow(execution_id, cursor, wait)
                if followed is None:  # Redis failed: poll the database from now on
                    redis_failed, streaming = True, False
                    continue
                events, gap = followed
                streaming = bool(events) and not gap
                if events:
                    batch, ended = _through_complete([(event, encode(event)) for event in events])
                    cursor = batch[-1][0]["seq"]
                    yield batch
                    if ended:
                        return
                if events or gap:
                    idle = 0.0
                    if gap:  # its events are on their way to the database
                        await asyncio.sleep(self.flush_delay)
                    continue
                idle += wait  # nothing for a while: has it ended without us?
                if keepalive is not None and idle >= keepalive:
                    idle = 0.0
                    yield []
            # Not running in this process, nothing new: poll the database while unfinished.
            if await self.db(store.get_status, execution_id) in store.TERMINAL:
                if not await self.db(store.events_after, execution_id, cursor, 1):
                    return
                continue
            if self.fanout is not None and not redis_failed:
                continue
            await asyncio.sleep(self.poll_interval)
            idle += self.poll_interval
            if keepalive is not None and idle >= keepalive:
                idle = 0.0
                yield []


async def _while_growing(channel: Channel) -> None:
    """Turns of the loop before a woken subscriber reads, while each brings the channel
    more events (at most ``GATHER_TURNS``): events published back to back (a provider
    that streams faster than they are sent) go out in one batch, their tokens in one
    frame, instead of a frame each; a turn that brings none ends the wait, so events
    published apart go out at once."""
    seen = channel.last_seq
    for _ in range(GATHER_TURNS):
        await asyncio.sleep(0)
        if channel.last_seq == seen:
            return
        seen = channel.last_seq


def _through_complete(batch: list[Frame]) -> tuple[list[Frame], bool]:
    """``batch`` up to its ``complete`` event, and whether it had one (the stream ends)."""
    for index, (event, _) in enumerate(batch):
        if event["type"] == "complete":
            return batch[: index + 1], True
    return batch, False
