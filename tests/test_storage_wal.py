"""SQLite's write-ahead log is checkpointed by a thread of its own, not by a commit on
the event loop."""

from __future__ import annotations

import asyncio
import sqlite3

import peewee
import pytest

from storage import agents
from storage.users import create_user
from storage.wal import WAL_BACKSTOP_PAGES, Checkpointer


@pytest.fixture
def sqlite(database: peewee.Database) -> peewee.SqliteDatabase:
    if not isinstance(database, peewee.SqliteDatabase):
        pytest.skip("SQLite only")
    return database


def test_commits_leave_checkpoints_to_the_backstop(sqlite: peewee.SqliteDatabase):
    assert sqlite.execute_sql("PRAGMA wal_autocheckpoint").fetchone() == (WAL_BACKSTOP_PAGES,)


async def test_the_checkpointer_copies_the_log_into_the_database_file(
    sqlite: peewee.SqliteDatabase,
):
    owner = create_user(email="o@example.com", username="o", password_hash="x", full_name=None)
    for number in range(20):
        agents.create_agent(owner.id, {"name": f"agent-{number}"})
    checkpointer = Checkpointer(sqlite.database, interval=0.01)
    checkpointer.start()
    await asyncio.sleep(0.2)  # a few checkpoints ran
    await checkpointer.stop()

    # The database file alone, its log ignored, holds them now.
    with sqlite3.connect(f"file:{sqlite.database}?immutable=1", uri=True) as file_only:
        assert file_only.execute('SELECT COUNT(*) FROM "agent"').fetchone() == (20,)
