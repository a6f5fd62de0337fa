"""Column types shared by the models."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from typing import Any

import orjson
import peewee


def as_utc(value: datetime | str | None) -> datetime | None:
    """A stored timestamp as the driver returns it (SQLite: ISO text; PostgreSQL: a naive
    datetime), as an aware UTC datetime."""
    if type(value) is str:
        # Parsed with its zone in one step: a tz-less ``replace`` costs several times more.
        try:
            return datetime.fromisoformat(value + "+00:00")
        except ValueError:  # text that already carries an offset
            value = datetime.fromisoformat(value)
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


class UTCDateTimeField(peewee.DateTimeField):
    """An instant: stored as naive UTC (the columns' existing format, so no migration),
    read back as an aware UTC datetime, written from aware or naive-UTC values.

    Rows then go into replies as they are, with no per-field conversion. Values are
    written as the text the ``sqlite3`` driver made of them (``isoformat(" ")``, which
    PostgreSQL reads as a timestamp too): formatted once here, where the driver would
    call its adapter for every row a statement writes (a batch of events shares one).
    """

    def db_value(self, value: Any) -> Any:
        if type(value) is str:  # text is parsed first, as Peewee does
            value = self.adapt(value)
        if isinstance(value, datetime):
            if value.tzinfo is UTC:  # ``utcnow()``: every row an execution writes has some
                return _naive_utc_text(value)
            if value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)
            return value.isoformat(" ")
        return value

    def python_value(self, value: Any) -> Any:
        value = super().python_value(value)
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def _naive_utc_text(value: datetime) -> str:
    """``value``'s ``isoformat(" ")`` without its zone, the date and time of day formatted
    once a second (``isoformat`` formats each number with C's ``sprintf``)."""
    text = _second_text(value.year, value.month, value.day, value.hour, value.minute, value.second)
    return f"{text}.{value.microsecond:06d}" if value.microsecond else text


@functools.lru_cache(maxsize=4)
def _second_text(year: int, month: int, day: int, hour: int, minute: int, second: int) -> str:
    return f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}"


def json_text(value: Any) -> str:
    """``value`` as compact JSON text: orjson, several times faster on the rows every
    execution writes; the standard library for what orjson refuses (integers beyond 64
    bits, keys that are not strings, lone surrogates, nesting past 255 levels), which it
    writes as before. orjson writes NaN and infinities as ``null``, which is valid JSON."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(value, separators=(",", ":"))


class JSONField(peewee.TextField):
    """JSON in a text column: portable across SQLite and PostgreSQL."""

    def db_value(self, value: Any) -> str | None:
        return None if value is None else json_text(value)

    def python_value(self, value: str | None) -> Any:
        if value is None:
            return None
        try:
            return json.loads(value)
        except RecursionError:  # stored before nesting was bounded; must not break a list
            return {"_omitted": "this stored value nests too deep to read"}
