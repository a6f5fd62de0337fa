"""The streams' shared timer: one timer a tick for every waiter, none while nobody waits."""

from __future__ import annotations

import asyncio

import pytest

from cadre.ticker import Ticker


def counting_timers(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays of the timers the running loop arms from now on."""
    loop = asyncio.get_running_loop()
    armed: list[float] = []
    call_later = loop.call_later

    def recording(delay, callback, *args, **kwargs):
        armed.append(delay)
        return call_later(delay, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_later", recording)
    return armed


async def test_the_waiters_of_one_tick_share_one_timer(monkeypatch):
    armed = counting_timers(monkeypatch)
    ticker = Ticker(0.05)

    await asyncio.gather(*(ticker.tick() for _ in range(100)))

    assert armed == [0.05]


async def test_a_waiter_after_a_tick_arms_the_next_one_and_a_cancelled_one_is_dropped(
    monkeypatch,
):
    armed = counting_timers(monkeypatch)
    ticker = Ticker(0.05)
    await ticker.tick()
    left = asyncio.ensure_future(ticker.tick())
    await asyncio.sleep(0)
    left.cancel()  # a stream that ended: the tick still comes for the others

    await ticker.tick()

    assert armed == [0.05, 0.05]
    assert left.cancelled()


def test_a_ticker_outlives_the_loop_it_first_ticked_on():
    ticker = Ticker(0.01)

    async def tick_then_leave_one_armed() -> asyncio.Future[None]:
        await ticker.tick()
        return asyncio.ensure_future(ticker.tick())  # its timer never fires: the loop ends

    left = asyncio.run(tick_then_leave_one_armed())
    assert left.cancelled()
    asyncio.run(asyncio.wait_for(ticker.tick(), 5))  # a new loop: a new timer
