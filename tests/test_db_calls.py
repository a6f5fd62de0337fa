"""Blocking database calls: inline on SQLite, in worker threads on PostgreSQL."""

from __future__ import annotations

import threading

import anyio
import peewee
import pytest

from cadre.db_calls import DatabaseCalls
from storage import db


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
