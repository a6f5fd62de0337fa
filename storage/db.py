"""The database: declared unbound here, bound from a URL by the app factory."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import peewee
from playhouse.db_url import connect, parse
from playhouse.migrations import Runner
from playhouse.pool import PooledDatabase

from storage.wal import WAL_BACKSTOP_PAGES

database = peewee.DatabaseProxy()

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "synchronous": "normal",
    "busy_timeout": 5000,
    "cache_size": -16000,
    "wal_autocheckpoint": WAL_BACKSTOP_PAGES,  # checkpoints run off the loop (storage.wal)
}


POOLED_SCHEMES = frozenset({"postgres", "postgresql", "postgresext", "postgresqlext"})
# Up to 20 connections per worker process (uvicorn's threadpool has 40 threads: the rest
# wait up to 30 s for one); idle ones older than 5 minutes are closed rather than reused.
POOL_DEFAULTS = {"max_connections": 20, "stale_timeout": 300, "timeout": 30}

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
        instance = cls.__new__(cls)
        instance.__data__, instance._dirty, instance.__rel__ = cls.row_data(row), set(), {}
        return instance

    @classmethod
    def row_data(cls, row: tuple[Any, ...]) -> dict[str, Any]:
        """A raw row's values by field name, as a model built from it holds them (its
        ``__data__``): for lists that read rows without an object per row."""
        return _row_reader(cls)(row)

    @classmethod
    def insert_row(cls, **values: Any) -> Self:
        """``create`` for hot paths: one prepared ``INSERT`` (no query built each time),
        missing columns given their field defaults, returning the model as ``create`` would."""
        fields = cls._meta.fields
        for name, field in fields.items():
            if name not in values and field.default is not None:
                values[name] = field.default() if callable(field.default) else field.default
        names = tuple(values)
        params = [fields[name].db_value(values[name]) for name in names]
        database.execute_sql(_insert_sql(cls, names, database.param), params)
        instance = cls.__new__(cls)
        data = {name: values.get(name) for name in fields}
        instance.__data__, instance._dirty, instance.__rel__ = data, set(), {}
        return instance

    @classmethod
    def get_where(cls, **equals: Any) -> Self | None:
        """The first row whose columns equal ``equals`` (a unique key), or None: for hot
        paths, one prepared ``SELECT`` of every column (no query built each time) and the
        model built by ``from_row``."""
        names = tuple(equals)
        fields = cls._meta.fields
        params = [fields[name].db_value(equals[name]) for name in names]
        row = database.execute_sql(_select_sql(cls, names, database.param), params).fetchone()
        return None if row is None else cls.from_row(row)


@functools.cache
def _select_sql(model: type[BaseModel], names: tuple[str, ...], mark: str) -> str:
    meta = model._meta
    columns = ", ".join(f'"{field.column_name}"' for field in meta.sorted_fields)
    where = " AND ".join(f'"{meta.fields[name].column_name}" = {mark}' for name in names)
    return f'SELECT {columns} FROM "{meta.table_name}" WHERE {where} LIMIT 1'


@functools.cache
def _insert_sql(model: type[BaseModel], names: tuple[str, ...], mark: str) -> str:
    meta = model._meta
    columns = ", ".join(f'"{meta.fields[name].column_name}"' for name in names)
    marks = ", ".join([mark] * len(names))
    return f'INSERT INTO "{meta.table_name}" ({columns}) VALUES ({marks})'


@functools.cache
def _row_reader(model: type[BaseModel]) -> Callable[[tuple[Any, ...]], dict[str, Any]]:
    """A function from a raw row to its values by field name, written for ``model``:
    one dict display with each column at its index, converted only where the driver's
    value is not what the model holds (timestamps, JSON, booleans). A page reads a
    hundred rows; a loop over the columns cost half again as much per row."""
    from storage.fields import JSONField, UTCDateTimeField, as_utc

    converters: dict[str, Callable[[Any], Any]] = {}
    items = []
    for index, field in enumerate(model._meta.sorted_fields):
        value = f"row[{index}]"
        if isinstance(field, UTCDateTimeField | JSONField) or not isinstance(
            field, (*_AS_IS, peewee.ForeignKeyField)
        ):
            name = f"convert_{index}"
            converters[name] = as_utc if isinstance(field, UTCDateTimeField) else field.python_value
            value = f"{name}({value})"
        items.append(f"{field.name!r}: {value}")
    source = f"def read(row):\n    return {{{', '.join(items)}}}\n"
    namespace: dict[str, Any] = dict(converters)
    exec(compile(source, f"<row reader of {model.__name__}>", "exec"), namespace)
    return namespace["read"]


def private_file(path: Path) -> None:
    """Create ``path`` (empty) readable by its owner alone, unless it exists; its folder 0700."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def is_embedded(url: str) -> bool:
    """True for SQLite: a local file, queried in-process (see ``cadre.db_calls``)."""
    return url.startswith("sqlite")


def open_database(url: str) -> peewee.Database:
    """Bind ``database`` to ``url`` (``sqlite:///path`` or ``postgresql://…``) and return it.

    A new SQLite file is made 0600 first (SQLite gives its -wal and -shm files the
    same mode), in a folder made 0700: it holds password hashes and every agent's data.

    PostgreSQL is opened pooled (``postgresql+pool://``): database calls run in worker
    threads there, each taking a connection for the call and giving it back after
    (``release``), so connections are shared rather than one kept open per thread.
    ``max_connections``, ``stale_timeout`` and ``timeout`` (seconds to wait for a free
    connection) may be set in the URL's query string; ``POOL_DEFAULTS`` otherwise.
    """
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        private_file(Path(url.removeprefix("sqlite:///")))
    scheme, separator, rest = url.partition("://")
    params: dict[str, object] = {}
    if is_embedded(url):
        params = {"pragmas": SQLITE_PRAGMAS}
    elif scheme in POOLED_SCHEMES:
        url = f"{scheme}+pool{separator}{rest}"
        given = parse(url)
        params = {key: value for key, value in POOL_DEFAULTS.items() if key not in given}
    db = connect(url, **params)
    database.initialize(db)
    return db


def release() -> None:
    """Give the calling thread's connection back to the pool (a worker thread's, after a call)."""
    if not database.is_closed():
        database.close()


def close_all(db: peewee.Database) -> None:
    """Close every connection of ``db``: the pool's too, whichever thread took them."""
    if isinstance(db, PooledDatabase):
        db.close_all()
    elif not db.is_closed():
        db.close()


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
