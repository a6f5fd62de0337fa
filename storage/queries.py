"""The helpers every list endpoint uses: ownership filtering, and pagination by offset
or by cursor (keyset: ``?after=``), each page telling where the next one starts."""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

import peewee

from cadre.errors import ValidationFailed
from storage.db import BaseModel, database


def owned(
    query: peewee.ModelSelect, model: type[peewee.Model], owner_id: str | None
) -> peewee.ModelSelect:
    """Restrict ``query`` to ``owner_id``'s rows; ``None`` (an admin asking for all) keeps all."""
    return query if owner_id is None else query.where(model.owner == owner_id)


def rarely_true(condition: peewee.Expression) -> peewee.Expression:
    """``condition``, which holds for few rows (the unfinished runs among all finished
    ones), said so to SQLite's planner. With statistics (``ANALYZE``, ``PRAGMA
    optimize``) SQLite estimates a status ``IN`` by the column's average rows per value
    and scanned the whole table instead of using the status index: 0.12 s on every
    beat at a million runs, on the event loop. PostgreSQL keeps each value's own
    frequency and needs no hint."""
    sqlite = isinstance(database.obj, peewee.SqliteDatabase)
    return peewee.fn.unlikely(condition) if sqlite else condition


class Page(NamedTuple):
    rows: list[Any]
    total: int
    after: str | None  # the cursor of the next page; None when this one is the last


def paginate(
    query: peewee.ModelSelect,
    keys: tuple[peewee.Field, peewee.Field],
    *,
    limit: int,
    offset: int = 0,
    after: str | None = None,
    descending: bool = False,
    count: Callable[[], int] | None = None,
    plain: bool = False,
) -> Page:
    """One page of ``query`` in ``keys`` order (a timestamp, then the unique id).

    ``after`` (a cursor from an earlier page) starts the page just past that row: an
    index on the keys finds it at once, however deep, where an offset reads every row
    it skips. A page that ends the list gives the total; otherwise ``count`` gives it
    when the caller keeps one (lists with no filter), else a count query.

    A whole-model query (``Model.select()`` with no join) is fetched raw and each row
    built by ``BaseModel.from_row``: Peewee's per-field conversion of every column, and
    its compiling of the same column list on every request, were most of a page's cost.
    ``plain`` gives the rows as their values by field name (``fetch_rows``), no model each.
    """
    first, second = keys
    whole = query
    if after is not None:
        at, row_id = _decode(after, first)
        # A row-value comparison: the (owner, time, id) index seeks straight to it.
        mark = peewee.Tuple(first.db_value(at), second.db_value(row_id))
        position = peewee.Tuple(first, second)
        query = query.where(position < mark if descending else position > mark)
    order = (first.desc(), second.desc()) if descending else (first, second)
    # One row more than the page says whether another page follows.
    page = query.order_by(*order).limit(limit + 1).offset(offset)
    rows = fetch_rows(page) if plain else fetch(page)
    more = len(rows) > limit
    rows = rows[:limit]
    last = None if not more else rows[-1] if plain else rows[-1].__data__
    cursor = None if last is None else _encode(last[first.name], last[second.name])
    if after is None and not more and (rows or offset == 0):
        total = offset + len(rows)
    else:
        total = count() if count is not None else whole.order_by().count()
    return Page(rows, total, cursor)


def fetch(query: peewee.ModelSelect) -> list[Any]:
    """A list's rows as models, paged or not: fetched raw and built by ``from_row`` when
    the query selects every column of one ``BaseModel`` table, else through Peewee."""
    sql = compiled(query)
    if sql is None:
        return [row for row in query]  # list() would ask peewee for len(): a query apart
    return [query.model.from_row(row) for row in database.execute_sql(*sql)]


def fetch_rows(query: peewee.ModelSelect) -> list[dict[str, Any]]:
    """``fetch``'s rows as their values by field name (what its models would hold in
    ``__data__``), with no model object per row: for lists that only read the values."""
    sql = compiled(query)
    if sql is None:
        return [row.__data__ for row in query]
    row_data = query.model.row_data
    return [row_data(row) for row in database.execute_sql(*sql)]


def compiled(query: peewee.ModelSelect) -> tuple[str, list[Any]] | None:
    """``query``'s SQL and parameters, as Peewee compiles them, with only its ``WHERE``
    compiled on each call: the column list, table, ``ORDER BY`` and ``LIMIT`` text are
    compiled once per shape (they were most of a page's SQL building). None unless it
    selects every column of one ``BaseModel`` table, ordered by that table's columns."""
    model = query.model
    if not (_plain(query) and issubclass(model, BaseModel)):
        return None
    order = _order_key(query)
    if order is None or (query._limit is None and query._offset is not None):
        return None
    dialect = type(database.obj)  # the database the proxy is bound to
    head, tail = _text(model, dialect, order, query._limit is not None, query._offset is not None)
    params = [value for value in (query._limit, query._offset) if value is not None]
    if query._where is None:
        return head + tail, params
    context = database.get_sql_context()
    context.alias_manager.add(model._meta.table)  # "t1", as in the full SELECT
    with context.scope_normal(converter=None, in_projection=False, subquery=True):
        where, where_params = context.sql(query._where).query()
    return f"{head} WHERE {where}{tail}", [*where_params, *params]


def _plain(query: peewee.ModelSelect) -> bool:
    """A whole-model ``SELECT`` of one table: no join, grouping, window, CTE or lock."""
    return bool(
        query._is_default
        and not query._joins
        and len(query._from_list) == 1
        and not (query._group_by or query._having or query._windows or query._cte_list)
        and not (query._distinct or query._simple_distinct or query._for_update)
    )


OrderKey = tuple[tuple[str, str | None], ...]


def _order_key(query: peewee.ModelSelect) -> OrderKey | None:
    """The ``ORDER BY`` as (field name, direction) pairs; None for anything but the
    query's own columns, plainly ascending or descending."""
    key = []
    for term in query._order_by or ():
        direction = None
        if isinstance(term, peewee.Ordering):
            if term.collation or term.nulls:
                return None
            term, direction = term.node, term.direction
        if not (isinstance(term, peewee.Field) and term.model is query.model):
            return None
        key.append((term.name, direction))
    return tuple(key)


@functools.cache
def _text(
    model: type[BaseModel],
    dialect: type[peewee.Database],
    order: OrderKey,
    limit: bool,
    offset: bool,
) -> tuple[str, str]:
    """The ``SELECT … FROM …`` before a shape's ``WHERE`` and the text after it, from the
    model's own query compiled once."""
    fields = model._meta.fields
    terms = [
        fields[name] if direction is None else peewee.Ordering(fields[name], direction)
        for name, direction in order
    ]
    query = model.select().where(peewee.SQL("1 = 1")).order_by(*terms)
    query = query.limit(1 if limit else None).offset(1 if offset else None)
    sql, _ = query.sql()
    head, _, tail = sql.partition(" WHERE 1 = 1")
    return head, tail


def _encode(at: datetime | int, row_id: str) -> str:
    value = at.isoformat() if isinstance(at, datetime) else at
    raw = json.dumps([value, row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str, first: peewee.Field) -> tuple[datetime | int, str]:
    """The key values a cursor marks, the first typed as its column (a time or a number)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if isinstance(first, peewee.DateTimeField):
            return datetime.fromisoformat(at), str(row_id)
        if type(at) is not int:
            raise TypeError("not a number")
        return at, str(row_id)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ValidationFailed(
            "The cursor is not one this API gave out.",
            error="invalid_cursor",
            details={"query.after": "not a cursor from a page's next link"},
        ) from exc
