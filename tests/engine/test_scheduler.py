"""Run slots: a global cap, a per-user cap, waiters served in order."""

from __future__ import annotations

import asyncio

import pytest

from cadre.engine.scheduler import Scheduler


async def started(scheduler: Scheduler, owner: str, log: list[str], name: str) -> None:
    await scheduler.acquire(owner)
    log.append(name)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_one_user_at_the_cap_does_not_block_another() -> None:
    async def scenario() -> None:
        scheduler = Scheduler(max_running=4, per_user=2)
        log: list[str] = []
        tasks = [asyncio.create_task(started(scheduler, "a", log, f"a{i}")) for i in range(1, 5)]
        await settle()
        assert log == ["a1", "a2"]
        tasks.append(asyncio.create_task(started(scheduler, "b", log, "b1")))
        await settle()
        assert log == ["a1", "a2", "b1"]  # b jumped a3 and a4, who wait for a's own slots
        scheduler.release("a")
        await settle()
        assert log == ["a1", "a2", "b1", "a3"]  # in order: a3 before a4
        scheduler.release("b")
        await settle()
        assert log == ["a1", "a2", "b1", "a3"]  # a free slot, but a is at its cap
        scheduler.release("a")
        await settle()
        assert log[-1] == "a4"
        await asyncio.gather(*tasks)

    asyncio.run(scenario())


def test_the_global_cap_holds_and_waiters_keep_their_order() -> None:
    async def scenario() -> None:
        scheduler = Scheduler(max_running=2, per_user=2)
        log: list[str] = []
        order = [("a1", "a"), ("b1", "b"), ("c1", "c"), ("a2", "a"), ("b2", "b")]
        tasks = [asyncio.create_task(started(scheduler, o, log, n)) for n, o in order]
        await settle()
        assert log == ["a1", "b1"]
        scheduler.release("a")
        await settle()
        assert log == ["a1", "b1", "c1"]
        scheduler.release("b")
        scheduler.release("c")
        await settle()
        assert log == ["a1", "b1", "c1", "a2", "b2"]
        assert scheduler.total == 2
        await asyncio.gather(*tasks)

    asyncio.run(scenario())


def test_a_cancelled_waiter_leaves_the_line_and_no_slot_leaks() -> None:
    async def scenario() -> None:
        scheduler = Scheduler(max_running=1, per_user=1)
        await scheduler.acquire("a")
        waiting = asyncio.create_task(scheduler.acquire("b"))
        await settle()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert scheduler.waiters == []
        scheduler.release("a")
        assert scheduler.total == 0
        assert scheduler.try_acquire("c")

    asyncio.run(scenario())


def test_try_acquire_never_takes_a_slot_past_either_cap() -> None:
    scheduler = Scheduler(max_running=3, per_user=2)
    assert scheduler.try_acquire("a") and scheduler.try_acquire("a")
    assert not scheduler.try_acquire("a")
    assert scheduler.try_acquire("b")
    assert not scheduler.try_acquire("c")
