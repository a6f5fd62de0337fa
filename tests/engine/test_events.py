"""The event bus on its own: numbering, replay then live, late subscribers, batched writes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from cadre.engine.events import BUSY_BATCH, GATHER_TURNS, Event, EventBus
from storage import executions as store


async def collect(subscription, until: str = "complete") -> list[Event]:
    events = []
    async for event in subscription:
        if event is not None:
            events.append(event)
            if event["type"] == until:
                break
    return events


async def test_events_are_numbered_from_one_without_gaps(execution_id: str):
    bus = EventBus()
    published = [bus.publish(execution_id, "token", content=str(i)) for i in range(5)]
    await bus.close(execution_id)

    assert [event["seq"] for event in published] == [1, 2, 3, 4, 5]
    assert [row.seq for row in store.events_after(execution_id, 0, 100)] == [1, 2, 3, 4, 5]


async def test_numbering_continues_after_the_stored_events(execution_id: str):
    bus = EventBus()
    bus.publish(execution_id, "status", status="queued")
    await bus.close(execution_id)

    assert EventBus().publish(execution_id, "status", status="running")["seq"] == 2


async def test_a_subscriber_gets_the_replay_then_live_events_once_each_in_order(
    execution_id: str,
):
    bus = EventBus()
    bus.publish(execution_id, "status", status="queued")
    bus.publish(execution_id, "status", status="running")
    subscriber = asyncio.create_task(collect(bus.subscribe(execution_id, after=0)))
    await asyncio.sleep(0)  # the subscriber has replayed and waits for more
    bus.publish(execution_id, "token", content="hi")
    bus.publish(execution_id, "complete", status="completed")
    await bus.close(execution_id)

    events = await asyncio.wait_for(subscriber, 10)

    assert [(e["seq"], e["type"]) for e in events] == [
        (1, "status"),
        (2, "status"),
        (3, "token"),
        (4, "complete"),
    ]


async def test_a_subscriber_gets_only_the_events_after_its_cursor(execution_id: str):
    bus = EventBus()
    for i in range(3):
        bus.publish(execution_id, "token", content=str(i))
    bus.publish(execution_id, "complete", status="completed")

    events = await asyncio.wait_for(collect(bus.subscribe(execution_id, after=2)), 10)

    assert [e["seq"] for e in events] == [3, 4]


async def test_a_late_subscriber_reads_a_finished_execution_from_the_database(
    execution_id: str,
):
    bus = EventBus()
    bus.publish(execution_id, "token", content="a")
    bus.publish(execution_id, "complete", status="completed")
    await bus.close(execution_id)
    store.update_execution(execution_id, status="completed")

    events = await asyncio.wait_for(collect(EventBus().subscribe(execution_id)), 10)

    assert [(e["seq"], e["type"]) for e in events] == [(1, "token"), (2, "complete")]


async def test_a_late_subscriber_to_a_finished_execution_without_complete_stops(
    execution_id: str,
):
    bus = EventBus()
    bus.publish(execution_id, "token", content="a")
    await bus.close(execution_id)
    store.update_execution(execution_id, status="failed")

    events = await asyncio.wait_for(collect(EventBus().subscribe(execution_id)), 10)

    assert [e["seq"] for e in events] == [1]


async def test_events_published_together_are_written_in_one_batch(
    execution_id: str, monkeypatch: pytest.MonkeyPatch
):
    batches: list[list[Any]] = []
    write = store.append_events
    monkeypatch.setattr(
        store,
        "append_events",
        lambda rows, *rest: (batches.append(rows), write(rows, *rest)),
    )
    bus = EventBus(flush_delay=0.01)
    for i in range(3):
        bus.publish(execution_id, "token", content=str(i))

    assert batches == []  # nothing is written while publishing
    for _ in range(500):  # the flush timer fires once the publisher yields
        if batches:
            break
        await asyncio.sleep(0.01)

    assert [[row[1] for row in batch] for batch in batches] == [[1, 2, 3]]
    assert store.count_events(execution_id) == 3


async def test_tracked_usage_is_stored_as_it_stands_when_its_events_are(execution_id: str):
    bus = EventBus(flush_delay=3600)  # written only when drained
    streamed = 0
    bus.track(execution_id, lambda: {"completion_tokens": streamed})
    for _ in range(3):
        streamed += 1
        bus.publish(execution_id, "token", content="w")
    await bus.drain()
    stored = store.get_execution(execution_id, None).completion_tokens

    bus.drop_progress(execution_id)
    streamed += 1
    bus.publish(execution_id, "token", content="w")
    await bus.close(execution_id)

    assert stored == 3
    assert store.get_execution(execution_id, None).completion_tokens == 3  # untracked since
    assert store.count_events(execution_id) == 4


async def test_after_a_large_batch_the_next_one_waits_the_busy_delay(execution_id: str):
    bus = EventBus(flush_delay=0.01, busy_flush_delay=3600)
    for i in range(BUSY_BATCH):
        bus.publish(execution_id, "token", content=str(i))
    bus.flush()
    bus.publish(execution_id, "token", content="next")
    await asyncio.sleep(0.2)  # many times flush_delay

    assert store.count_events(execution_id) == BUSY_BATCH
    await bus.close(execution_id)
    assert store.count_events(execution_id) == BUSY_BATCH + 1


async def test_closing_a_channel_writes_its_pending_events_first(execution_id: str):
    bus = EventBus(flush_delay=3600)  # the timer never fires during the test
    bus.publish(execution_id, "token", content="a")
    bus.publish(execution_id, "complete", status="completed")

    await bus.close(execution_id)

    assert [row.type for row in store.events_after(execution_id, 0, 10)] == ["token", "complete"]


async def test_channels_closed_together_are_written_in_one_batch(
    execution_id: str, monkeypatch: pytest.MonkeyPatch
):
    other = store.create_execution(**_copy_of(store.get_execution(execution_id, None))).id
    batches: list[list[Any]] = []
    write = store.append_events

    def recorded(rows: list[Any], *rest: Any) -> set[str]:
        batches.append(rows)
        return write(rows, *rest)

    monkeypatch.setattr(store, "append_events", recorded)
    bus = EventBus(flush_delay=3600)  # only the closes write

    async def finish(each: str) -> None:
        bus.publish(each, "token", content="a")
        bus.publish(each, "complete", status="completed")
        await bus.close(each)

    await asyncio.gather(finish(execution_id), finish(other))

    assert [sorted((row[0] == other, row[1]) for row in batch) for batch in batches] == [
        [(False, 1), (False, 2), (True, 1), (True, 2)]
    ]


def _copy_of(execution: store.Execution) -> dict[str, Any]:
    names = ("agent_id", "agent_name", "task", "mode", "inputs", "config")
    return {
        **{name: getattr(execution, name) for name in names},
        "owner": execution.owner_id,
        "provider": execution.provider,
        "model": execution.model,
    }


async def test_a_subscriber_behind_the_memory_reads_the_rest_from_storage_without_gaps(
    execution_id: str,
):
    bus = EventBus(flush_delay=3600, history=4)  # only the last 4 events stay in memory
    for i in range(10):
        bus.publish(execution_id, "token", content=str(i))

    subscription = bus.subscribe(execution_id, after=2)
    first = [await anext(subscription) for _ in range(8)]  # 3..6 from storage, 7..10 memory
    bus.publish(execution_id, "complete", status="completed")
    rest = await collect(subscription)
    await bus.close(execution_id)

    assert len(bus.channels) == 0
    assert [event["seq"] for event in first + rest] == list(range(3, 12))
    assert [event["content"] for event in first] == [str(i) for i in range(2, 10)]


async def test_a_channel_keeps_only_its_latest_events_in_memory(execution_id: str):
    bus = EventBus(history=3)
    for i in range(10):
        bus.publish(execution_id, "token", content=str(i))

    channel = bus.channels[execution_id]
    assert [event["seq"] for event, _ in channel.frames] == [8, 9, 10]
    assert channel.first_seq == 8 and channel.last_seq == 10
    await bus.close(execution_id)


async def test_each_event_is_encoded_once_and_stored_as_sent(execution_id: str):
    bus = EventBus()
    event = bus.publish(execution_id, "token", content="héllo")
    ((_, text),) = bus.channels[execution_id].frames
    await bus.close(execution_id)

    assert json.loads(text) == event
    assert store.events_after(execution_id, 0, 10)[0].data == event


async def test_an_idle_subscriber_gets_keepalives_and_events_wake_it_at_once(execution_id: str):
    bus = EventBus()
    bus.publish(execution_id, "status", status="running")
    subscription = bus.subscribe(execution_id, after=1, keepalive=0.05)

    assert await asyncio.wait_for(anext(subscription), 5) is None  # idle: a keep-alive
    waiting = asyncio.ensure_future(anext(subscription))
    await asyncio.sleep(0)
    bus.publish(execution_id, "token", content="x")
    assert (await asyncio.wait_for(waiting, 5))["content"] == "x"
    await bus.close(execution_id)


async def test_waiting_subscribers_share_one_timer_per_channel(execution_id: str):
    bus = EventBus()
    bus.publish(execution_id, "status", status="running")
    channel = bus.channels[execution_id]
    waiters = [asyncio.ensure_future(channel.wait(30)) for _ in range(50)]
    await asyncio.sleep(0)
    timers = {id(channel._timer)}
    for i in range(20):
        bus.publish(execution_id, "token", content=str(i))
        await asyncio.sleep(0)
        waiters = [asyncio.ensure_future(channel.wait(30)) for _ in range(50)]
        await asyncio.sleep(0)
        timers.add(id(channel._timer))

    assert len(timers) == 1  # the deadlines only moved later: the first timer stands
    for waiter in waiters:
        waiter.cancel()
    await bus.close(execution_id)


async def publish_one_a_turn(bus: EventBus, execution_id: str, count: int) -> None:
    """A provider streaming faster than events are sent: a token each turn of the loop."""
    for i in range(count):
        bus.publish(execution_id, "token", content=str(i))
        await asyncio.sleep(0)


async def test_events_published_in_consecutive_turns_go_out_in_one_batch(execution_id: str):
    bus = EventBus()
    bus.publish(execution_id, "status", status="running")
    batches = bus.follow(execution_id, after=1)
    first = asyncio.ensure_future(anext(batches))
    await asyncio.sleep(0)  # it waits for the next event

    await publish_one_a_turn(bus, execution_id, GATHER_TURNS + 1)

    assert [event["content"] for event, _ in await first] == [
        str(i) for i in range(GATHER_TURNS + 1)
    ]
    await bus.close(execution_id)


async def test_gathering_a_batch_stops_after_its_turns_while_events_keep_coming(
    execution_id: str,
):
    bus = EventBus()
    bus.publish(execution_id, "status", status="running")
    batches = bus.follow(execution_id, after=1)
    first = asyncio.ensure_future(anext(batches))
    await asyncio.sleep(0)

    publishing = asyncio.ensure_future(publish_one_a_turn(bus, execution_id, 50))
    batch = await first

    assert len(batch) <= GATHER_TURNS + 1  # sent while the stream goes on
    await publishing
    await bus.close(execution_id)


async def test_an_event_published_alone_goes_out_after_one_quiet_turn(execution_id: str):
    bus = EventBus()
    bus.publish(execution_id, "status", status="running")
    batches = bus.follow(execution_id, after=1)
    first = asyncio.ensure_future(anext(batches))
    await asyncio.sleep(0)

    bus.publish(execution_id, "token", content="alone")
    for _ in range(3):  # woken, one turn that brings nothing, read
        await asyncio.sleep(0)

    assert first.done() and [event["content"] for event, _ in first.result()] == ["alone"]
    await bus.close(execution_id)
