"""The database: declared unbound here, bound from a URL by the app factory."""

from __future__ import annotations

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


def open_database(url: str) -> peewee.Database:
    """Bind ``database`` to ``url`` (``sqlite:///path`` or ``postgresql://…``) and return it."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
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
