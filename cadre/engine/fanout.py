"""Events and control across processes through Redis (``CADRE_REDIS_URL``).

Events: every event an ``EventBus`` publishes is also appended to a Redis Stream of its
own execution, ``cadre:events:<execution_id>``, with the entry id ``<seq>-0``, so that a
subscriber in any process resumes after a ``seq`` with one ``XREAD`` and is woken the
moment the next event is added. Streams are trimmed to ``maxlen`` entries (roughly) and
expire ``ttl_seconds`` after their last event. The database stays the record: a stream
may lack events (trimmed, or published while Redis was unreachable), so readers take
only an unbroken run of ``seq`` from it and read any gap from the database.

Control: a process that changes an execution another process runs writes the request
to the execution's ``control`` column (the durable truth, read on every heartbeat) and
then ``poke``s it on the ``cadre:control`` channel, so the holder acts at once.

Redis failures never fail a run or lose an event: appends are dropped (logged once until
Redis answers again) and readers fall back to the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("cadre.fanout")

Event = dict[str, Any]
CONTROL_CHANNEL = "cadre:control"
MAX_BLOCK_SECONDS = 1.0  # a blocked read wakes at least this often to check the database


def stream_key(execution_id: str) -> str:
    return f"cadre:events:{execution_id}"


class Fanout:
    """One process's connection to Redis: the event appender and the control listener."""

    max_block_seconds = MAX_BLOCK_SECONDS

    def __init__(self, url: str, *, maxlen: int = 10_000, ttl_seconds: int = 3600) -> None:
        self.redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=1.0, socket_timeout=MAX_BLOCK_SECONDS + 4.0
        )
        self.maxlen = maxlen
        self.ttl_seconds = ttl_seconds
        self._queue: list[Event] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._failing = False
        self._sending = False  # a batch is on its way to Redis
        self._closing = False

    # -- events --------------------------------------------------------------------------

    def append(self, event: Event) -> None:
        """Queue ``event`` for its stream; a single writer sends them in order, batched."""
        self._queue.append(event)
        self._wake.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            if not batch:
                continue
            pipe = self.redis.pipeline(transaction=False)
            keys = set()
            for event in batch:
                key = stream_key(event["execution_id"])
                keys.add(key)
                pipe.xadd(
                    key,
                    {"e": json.dumps(event, separators=(",", ":"))},
                    id=f"{event['seq']}-0",
                    maxlen=self.maxlen,
                    approximate=True,
                )
            for key in keys:
                pipe.expire(key, self.ttl_seconds)
            self._sending = True
            try:
                results = await pipe.execute(raise_on_error=False)
            except (RedisError, OSError) as exc:
                self._failed(f"appending {len(batch)} events to Redis failed: {exc}")
                continue
            finally:
                self._sending = False
            errors = [r for r in results if isinstance(r, Exception)]
            if errors:  # e.g. a seq already in the stream (a run taken over): the db has it
                log.warning(
                    "Redis refused %d of %d appends: %s", len(errors), len(batch), errors[0]
                )
            self._recovered()

    def _failed(self, message: str) -> None:
        if not self._failing:
            self._failing = True
            log.warning("%s; live events go through the database until it answers", message)

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.warning("Redis answers again: live events go through it again")

    async def follow(
        self, execution_id: str, after: int, wait: float
    ) -> tuple[list[Event], bool] | None:
        """The unbroken run of events after ``after`` in the stream, waiting up to ``wait``
        seconds for one, and whether a gap follows it (its events are in the database);
        None when Redis cannot be reached."""
        milliseconds = max(1, int(min(wait, MAX_BLOCK_SECONDS) * 1000))
        try:
            reply = await self.redis.xread(
                {stream_key(execution_id): f"{after}-0"}, count=500, block=milliseconds
            )
        except (RedisError, OSError) as exc:
            log.warning("following %s through Redis failed: %s", execution_id, exc)
            return None
        events: list[Event] = []
        for _, entries in reply:
            for _, fields in entries:
                event = json.loads(fields[b"e"])
                if event["seq"] != after + len(events) + 1:
                    return events, True  # trimmed, or published while Redis was down
                events.append(event)
        return events, False

    # -- control -------------------------------------------------------------------------

    async def poke(self, execution_id: str) -> None:
        """Tell the process running ``execution_id`` to read its ``control`` column now."""
        try:
            await self.redis.publish(CONTROL_CHANNEL, execution_id)
        except (RedisError, OSError) as exc:
            log.warning(
                "poking %s through Redis failed (its heartbeat reads it): %s", execution_id, exc
            )

    def listen(self, on_poke: Callable[[str], None]) -> None:
        """Call ``on_poke(execution_id)`` for every poke, reconnecting after failures."""
        self._listener = asyncio.get_running_loop().create_task(self._listen(on_poke))

    async def _listen(self, on_poke: Callable[[str], None]) -> None:
        failing = False
        while not self._closing:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(CONTROL_CHANNEL)
                    if failing:
                        failing = False
                        log.warning("the Redis control channel is back")
                    # Not only cancelled: a cancel that lands as a read times out can be
                    # swallowed (Python 3.11's timeouts), so the loop checks a flag too.
                    while not self._closing:
                        message = await pubsub.get_message(timeout=MAX_BLOCK_SECONDS)
                        if message is not None:
                            on_poke(message["data"].decode())
            except (RedisError, OSError) as exc:
                if not failing:  # once per outage: the heartbeat carries control meanwhile
                    failing = True
                    log.warning("the Redis control channel failed (retrying every 1 s): %s", exc)
                await asyncio.sleep(1.0)
            except Exception:  # a failed poke must not end the listener
                log.exception("handling a control poke failed")

    # -- health and lifecycle --------------------------------------------------------------

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.redis.ping(), 1.0))
        except (RedisError, OSError, TimeoutError):
            return False

    async def aclose(self) -> None:
        """Send what is queued (briefly), then stop listening and disconnect."""
        if self._writer is not None:
            for _ in range(20):
                if not (self._queue or self._sending) or self._writer.done():
                    break
                await asyncio.sleep(0.05)
        self._closing = True
        self._wake.set()
        for task in (self._writer, self._listener):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(task, MAX_BLOCK_SECONDS * 2)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.redis.aclose(), MAX_BLOCK_SECONDS * 2)
