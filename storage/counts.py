"""How many rows of a kind each user owns (and, for cost records, what they add up to),
kept in the transaction that adds or removes one, so an unfiltered list's ``total`` is
one primary-key read, not a scan of the table."""

from __future__ import annotations

import functools

import peewee

from storage.db import BaseModel, database
from storage.users import User


class RowCount(BaseModel):
    owner = peewee.ForeignKeyField(User, on_delete="CASCADE")
    kind = peewee.CharField(max_length=32)  # a table's name: agent, execution, session, cost
    n = peewee.IntegerField(default=0)
    amount = peewee.FloatField(default=0.0)  # the rows' sum (cost: USD); 0 for other kinds

    class Meta:
        primary_key = peewee.CompositeKey("owner", "kind")


def bump(owner_id: str, kind: str, delta: int = 1, amount: float = 0.0) -> None:
    """Add ``delta`` rows (and ``amount``) to the owner's count; call inside the write's
    own transaction. A prepared upsert: every execution created runs it."""
    database.execute_sql(_bump_sql(database.param), [owner_id, kind, delta, amount, delta, amount])


@functools.cache
def _bump_sql(mark: str) -> str:
    """``INSERT … ON CONFLICT DO UPDATE``, as SQLite (3.24+) and PostgreSQL both take it."""
    table, owner = RowCount._meta.table_name, RowCount.owner.column_name
    return (
        f'INSERT INTO "{table}" ("{owner}", "kind", "n", "amount") '
        f"VALUES ({mark}, {mark}, {mark}, {mark}) "
        f'ON CONFLICT ("{owner}", "kind") DO UPDATE SET "n" = "{table}"."n" + {mark}, '
        f'"amount" = "{table}"."amount" + {mark}'
    )


def count(owner_id: str, kind: str) -> int:
    found = (
        RowCount.select(RowCount.n)
        .where((RowCount.owner == owner_id) & (RowCount.kind == kind))
        .scalar()
    )
    return found or 0


def amount(owner_id: str, kind: str) -> float:
    found = (
        RowCount.select(RowCount.amount)
        .where((RowCount.owner == owner_id) & (RowCount.kind == kind))
        .scalar()
    )
    return found or 0.0
