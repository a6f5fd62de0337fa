"""The database: declared unbound here, bound from a URL by the app factory."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import peewee
from playhouse.db_url import connect
from playhouse.migrations import Runner

database = peewee.DatabaseProxy()

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "synchronous": "normal",
    "busy_timeout": 5000,
    "cache_size": -16000,
}


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


def private_file(path: Path) -> None:
    """Create ``path`` (empty) readable by its owner alone, unless it exists; its folder 0700."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def open_database(url: str) -> peewee.Database:
    """Bind ``database`` to ``url`` (``sqlite:///path`` or ``postgresql://…``) and return it.

    A new SQLite file is made 0600 first (SQLite gives its -wal and -shm files the
    same mode), in a folder made 0700: it holds password hashes and every agent's data.
    """
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        private_file(Path(url.removeprefix("sqlite:///")))
    params = {"pragmas": SQLITE_PRAGMAS} if url.startswith("sqlite") else {}
    db = connect(url, **params)
    database.initialize(db)
    return db


def migrate(db: peewee.Database) -> list[str]:
    """Apply pending schema migrations; returns the names applied."""
    return Runner(db, directory=str(MIGRATIONS_DIR)).up()


def ping() -> bool:
    """True when the database answers a trivial query."""
    try:
        database.execute_sql("SELECT 1")
    except peewee.PeeweeException:
        return False
    return True
