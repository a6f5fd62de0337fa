"""Blocking database calls: inline on SQLite, in worker threads on PostgreSQL."""

from __future__ import annotations

import asyncio
import functools
import threading
import time

import anyio
import peewee
import pytest

from cadre.auth import USER_SCOPES, TokenService
from cadre.db_calls import DatabaseCalls
from storage import db, users


@pytest.mark.parametrize(
    ("url", "inline"),
    [
        ("sqlite:///data/cadre.db", True),
        ("sqlite:///:memory:", True),
        ("postgresql://cadre@db.example/cadre", False),
        ("postgres+pool://cadre@db.example/cadre", False),
    ],
)
def test_the_database_url_decides_where_calls_run(
    url: str, inline: bool, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(db, "release", lambda: None)  # no database is open here
    calls = DatabaseCalls(url)
    assert calls.inline is inline
    ran_in = anyio.run(calls, threading.get_ident)
    assert (ran_in == threading.get_ident()) is inline


def test_a_worker_thread_gives_its_connection_back(monkeypatch: pytest.MonkeyPatch):
    released: list[int] = []
    monkeypatch.setattr(db, "release", lambda: released.append(threading.get_ident()))
    ran_in = anyio.run(DatabaseCalls("postgresql://cadre@db.example/cadre"), threading.get_ident)
    assert released == [ran_in]


def test_postgresql_is_opened_pooled_with_the_urls_own_pool_settings(
    monkeypatch: pytest.MonkeyPatch,
):
    opened: dict[str, object] = {}

    def connect(url: str, **params: object) -> object:
        opened.update(url=url, **params)
        return peewee.SqliteDatabase(":memory:")

    monkeypatch.setattr(db, "connect", connect)
    db.open_database("postgresql://cadre@db.example/cadre?max_connections=5")
    assert opened == {
        "url": "postgresql+pool://cadre@db.example/cadre?max_connections=5",
        "stale_timeout": 300,
        "timeout": 30,
    }


@pytest.mark.parametrize("url", ["sqlite:///data/cadre.db", "postgresql://cadre@db.example/c"])
def test_token_checks_read_the_database_off_the_loop_only_on_postgresql(
    url: str, make_settings, monkeypatch: pytest.MonkeyPatch
):
    tokens = TokenService(make_settings(database_url=url))
    monkeypatch.setattr(db, "release", lambda: None)
    reads: list[int] = []
    monkeypatch.setattr(users, "is_active", lambda _: reads.append(threading.get_ident()) or True)
    monkeypatch.setattr(
        users, "family_revoked", lambda _: reads.append(threading.get_ident()) or False
    )
    token = tokens.issue_access("usr_1", "user", USER_SCOPES, "fam_1")

    async def twice() -> list[dict]:
        return [await tokens.authenticate(token) for _ in range(2)]  # the second is cached

    first, second = anyio.run(twice)
    assert first["sub"] == second["sub"] == "usr_1"
    assert len(reads) == 2  # the account and the login, read once
    anyio.run(tokens.recheck, first)  # an open stream's re-check, within the 5 s: no read
    assert len(reads) == 2
    anyio.run(functools.partial(tokens.recheck, first, fresh=True))
    assert len(reads) == 4
    on_the_loop = threading.get_ident() in reads
    assert on_the_loop is url.startswith("sqlite")


def burst_with_a_frame(turn_seconds: float) -> list[int | str]:
    """Twenty inline calls made at once, the first of which makes a frame ready to send:
    the order in which the calls and the frame ran."""
    calls = DatabaseCalls("sqlite:///:memory:", turn_seconds=turn_seconds)
    log: list[int | str] = []

    async def burst() -> None:
        ready = asyncio.get_running_loop().create_future()

        def store(index: int) -> None:
            log.append(index)
            if not ready.done():
                ready.set_result(None)

        async def send_frame() -> None:
            await ready
            log.append("frame")

        await asyncio.gather(send_frame(), *(calls(store, index) for index in range(20)))

    asyncio.run(burst())
    return log


def test_a_burst_of_inline_calls_lets_a_ready_frame_out_between_them():
    """One call a turn (a budget of 0 s): the frame goes out before the other calls run,
    and the calls still run in the order made."""
    log = burst_with_a_frame(turn_seconds=0)

    assert [item for item in log if item != "frame"] == list(range(20))
    assert log.index("frame") <= 2  # not after the other eighteen


def test_without_a_budget_the_burst_runs_in_one_turn_ahead_of_the_frame():
    """What the budget prevents: all the calls made in one turn run in it, and the frame
    they made ready waits for every one of them."""
    assert burst_with_a_frame(turn_seconds=3600) == [*range(20), "frame"]


def test_a_cancelled_call_waiting_for_its_turn_gives_its_place_up():
    calls = DatabaseCalls("sqlite:///:memory:", turn_seconds=0)
    ran: list[int] = []

    async def burst() -> None:
        tasks = [asyncio.ensure_future(calls(ran.append, index)) for index in range(4)]
        await asyncio.sleep(0)  # the first ran; the others wait for later turns
        tasks[1].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert tasks[1].cancelled()

    asyncio.run(burst())
    assert ran == [0, 2, 3]


def test_the_budget_starts_afresh_on_a_new_event_loop():
    calls = DatabaseCalls("sqlite:///:memory:", turn_seconds=0)
    for _ in range(2):  # the first loop's waiters and count do not carry over
        ran: list[int] = []

        async def burst(ran: list[int] = ran) -> None:
            await asyncio.gather(*(calls(ran.append, index) for index in range(3)))

        asyncio.run(burst())
        assert ran == [0, 1, 2]


def test_a_call_that_used_up_the_turns_time_sends_the_next_to_a_later_turn():
    """The budget is time: quick calls share a turn, but one that took longer than the
    budget leaves the next call for a later turn, after the frame it made ready."""
    calls = DatabaseCalls("sqlite:///:memory:", turn_seconds=0.001)
    log: list[str] = []

    async def burst() -> None:
        ready = asyncio.get_running_loop().create_future()

        def slow() -> None:
            time.sleep(0.005)  # at least five times the budget
            log.append("slow")
            ready.set_result(None)

        async def send_frame() -> None:
            await ready
            log.append("frame")

        await asyncio.gather(send_frame(), calls(slow), calls(log.append, "next"))

    asyncio.run(burst())
    assert log == ["slow", "frame", "next"]
