"""The per-account login throttle's slots, in memory (Redis: tests/attacks/test_brute_force.py)."""

from __future__ import annotations

import anyio
import pytest

from cadre import login_throttle
from cadre.errors import RateLimited
from cadre.login_throttle import LoginThrottle


def throttle() -> LoginThrottle:
    return LoginThrottle(None, max_failures=2, window=60)


def test_a_login_waits_for_checks_under_way_and_gets_the_slot_a_right_password_gives_back():
    async def scenario() -> list[str]:
        account, order = throttle(), []
        await account.reserve("a")
        await account.reserve("a")  # both slots held by checks under way

        async def third() -> None:
            await account.reserve("a")
            order.append("third checks")

        async with anyio.create_task_group() as group:
            group.start_soon(third)
            await anyio.sleep(0.2)
            order.append("first is right")
            await account.succeeded("a")
        return order

    assert anyio.run(scenario) == ["first is right", "third checks"]


def test_failures_fill_the_slots_and_refuse_even_waiting_logins():
    async def scenario() -> None:
        account = throttle()
        await account.reserve("a")
        await account.reserve("a")
        async with anyio.create_task_group() as group:

            async def waiting() -> None:
                with pytest.raises(RateLimited):
                    await account.reserve("a")

            group.start_soon(waiting)
            await anyio.sleep(0.1)
            await account.failed("a")
            await account.failed("a")
        with pytest.raises(RateLimited) as refused:
            await account.reserve("a")
        assert 55 <= refused.value.extra["retry_after"] <= 60

    anyio.run(scenario)


def test_success_clears_the_failures_and_gives_every_slot_back():
    async def scenario() -> None:
        account = throttle()
        await account.reserve("a")
        await account.failed("a")
        await account.reserve("a")
        await account.succeeded("a")
        for _ in range(2):  # both slots are free again
            await account.reserve("a")
        assert await account.storage.get(account.key("a")) == 0

    anyio.run(scenario)


def test_a_wait_that_outlasts_its_limit_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(login_throttle, "MAX_WAIT_SECONDS", 0.2)

    async def scenario() -> None:
        account = throttle()
        await account.reserve("a")
        await account.reserve("a")  # never resolved
        with pytest.raises(RateLimited):
            await account.reserve("a")

    anyio.run(scenario)
