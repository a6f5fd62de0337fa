"""Two event buses standing for two processes: B follows a run A holds through Redis.

B's database polling is set to an hour, so an event that reaches B in time came through
the stream. Needs ``CADRE_TEST_REDIS_URL`` (any database); the last test needs no Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from cadre.engine.events import Event, EventBus
from cadre.engine.fanout import Fanout
from scripts.live_server import free_port
from tests.conftest import TEST_REDIS_URL

needs_redis = pytest.mark.skipif(not TEST_REDIS_URL, reason="needs CADRE_TEST_REDIS_URL")
NEVER = 3600.0  # B's poll interval: only the stream can bring it anything in time


@pytest.fixture
async def make_fanout() -> AsyncIterator[Callable[[str], Fanout]]:
    made: list[Fanout] = []

    def make(url: str) -> Fanout:
        made.append(Fanout(url))
        return made[-1]

    yield make
    for fanout in made:
        await fanout.aclose()


async def follow(bus: EventBus, execution_id: str) -> list[Event]:
    events = []
    async for event in bus.subscribe(execution_id):
        if event is not None:
            events.append(event)
            if event["type"] == "complete":
                return events
    return events


def publish_tokens(bus: EventBus, execution_id: str, count: int) -> None:
    for i in range(count):
        bus.publish(execution_id, "token", content=str(i))


@needs_redis
async def test_a_run_held_by_another_bus_is_followed_through_its_stream(
    execution_id: str, make_fanout
):
    assert TEST_REDIS_URL is not None
    a = EventBus(fanout=make_fanout(TEST_REDIS_URL))
    b = EventBus(poll_interval=NEVER, fanout=make_fanout(TEST_REDIS_URL))
    a.publish(execution_id, "status", status="running")
    following = asyncio.create_task(follow(b, execution_id))
    for _ in range(10):
        publish_tokens(a, execution_id, 3)
        await asyncio.sleep(0.005)
    a.publish(execution_id, "complete", status="completed")

    events = await asyncio.wait_for(following, 30)
    assert [e["seq"] for e in events] == list(range(1, 33))
    assert events[-1]["type"] == "complete"
    await a.close(execution_id)


@needs_redis
async def test_events_missing_from_the_stream_are_read_from_the_database_once_each(
    execution_id: str, make_fanout
):
    assert TEST_REDIS_URL is not None
    fanout = make_fanout(TEST_REDIS_URL)
    a = EventBus(fanout=fanout)
    b = EventBus(poll_interval=NEVER, fanout=make_fanout(TEST_REDIS_URL))
    following = asyncio.create_task(follow(b, execution_id))
    publish_tokens(a, execution_id, 3)
    await asyncio.sleep(0.05)
    a.fanout = None  # as if Redis lost these (trimmed, or down a moment)
    publish_tokens(a, execution_id, 3)
    a.fanout = fanout
    publish_tokens(a, execution_id, 3)
    a.publish(execution_id, "complete", status="completed")

    events = await asyncio.wait_for(following, 30)
    assert [e["seq"] for e in events] == list(range(1, 11))
    await a.close(execution_id)


async def test_an_unreachable_redis_loses_no_event(execution_id: str, make_fanout):
    """Both buses' Redis is down: A stores everything, B gets it all from the database."""
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    a = EventBus(fanout=make_fanout(nowhere))
    b = EventBus(poll_interval=0.05, fanout=make_fanout(nowhere))
    following = asyncio.create_task(follow(b, execution_id))
    publish_tokens(a, execution_id, 20)
    a.publish(execution_id, "complete", status="completed")
    await a.close(execution_id)

    events = await asyncio.wait_for(following, 30)
    assert [e["seq"] for e in events] == list(range(1, 22))
