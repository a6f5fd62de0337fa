"""The database: declared unbound here, bound from a URL by the app factory."""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import Any, Self

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


# Column types whose values the drivers already return as Python wants them.
_AS_IS = (peewee.CharField, peewee.TextField, peewee.IntegerField, peewee.FloatField)


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Self:
        """A model from a raw ``SELECT`` of all its columns in field order, as Peewee
        would build it at a fraction of the cost: only the columns that need it are
        converted (timestamps, JSON, booleans), and no per-field setter runs."""
        names, converters = _row_plan(cls)
        data = dict(zip(names, row, strict=True))
        for name, convert in converters:
            data[name] = convert(data[name])
        instance = cls.__new__(cls)
        instance.__data__, instance._dirty, instance.__rel__ = data, set(), {}
        return instance


@functools.cache
def _row_plan(model: type[BaseModel]) -> tuple[tuple[str, ...], tuple[tuple[str, Any], ...]]:
    from storage.fields import JSONField, UTCDateTimeField, as_utc

    fields = model._meta.sorted_fields
    converters = tuple(
        (f.name, as_utc if isinstance(f, UTCDateTimeField) else f.python_value)
        for f in fields
        if isinstance(f, UTCDateTimeField | JSONField)
        or not isinstance(f, (*_AS_IS, peewee.ForeignKeyField))
    )
    return tuple(f.name for f in fields), converters


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
