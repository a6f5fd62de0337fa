"""Cost records: one per provider call, never updated."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import peewee

from storage import counts
from storage.db import BaseModel
from storage.fields import UTCDateTimeField
from storage.ids import new_id, utcnow
from storage.queries import fetch, owned
from storage.users import User


class CostRecord(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    owner = peewee.ForeignKeyField(User, backref="costs", on_delete="CASCADE")
    agent_id = peewee.CharField(max_length=40)
    agent_name = peewee.CharField(max_length=64)
    execution_id = peewee.CharField(max_length=40, index=True)
    provider = peewee.CharField(max_length=32)
    model = peewee.CharField(max_length=128)
    prompt_tokens = peewee.IntegerField()
    completion_tokens = peewee.IntegerField()
    cost_usd = peewee.FloatField()
    priced = peewee.BooleanField()
    timestamp = UTCDateTimeField(default=utcnow, index=True)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def record_cost(**fields: Any) -> CostRecord:
    """Insert a record and add it to its owner's kept count and sum (``storage.counts``);
    call inside the billing's transaction."""
    record = CostRecord.insert_row(id=new_id("cost"), timestamp=utcnow(), **fields)
    counts.bump(fields["owner"], "cost", amount=fields["cost_usd"])
    return record


def bill_execution(
    execution: Any,
    *,
    prompt_tokens: int,
    completion_tokens: int,
    cost_usd: float,
    priced: bool,
) -> CostRecord:
    """The record of one provider call of ``execution`` (its owner, agent, provider,
    model), inserted in the caller's transaction, which sets the execution's new totals
    too (``checkpoints.save_step``): recovery bills what they hold beyond the records."""
    return record_cost(
        owner=execution.owner_id,
        agent_id=execution.agent_id,
        agent_name=execution.agent_name,
        execution_id=execution.id,
        provider=execution.provider,
        model=execution.model,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost_usd=cost_usd,
        priced=priced,
    )


def count_records(execution_id: str) -> int:
    return CostRecord.select().where(CostRecord.execution_id == execution_id).count()


def billed(execution_id: str) -> tuple[int, int, float]:
    """Prompt tokens, completion tokens and cost recorded for one execution."""
    prompt, completion, cost = (
        CostRecord.select(
            peewee.fn.COALESCE(peewee.fn.SUM(CostRecord.prompt_tokens), 0),
            peewee.fn.COALESCE(peewee.fn.SUM(CostRecord.completion_tokens), 0),
            peewee.fn.COALESCE(peewee.fn.SUM(CostRecord.cost_usd), 0),
        )
        .where(CostRecord.execution_id == execution_id)
        .tuples()
        .get()
    )
    return int(prompt), int(completion), float(cost)


def _filtered(owner_id: str | None, since: datetime | None, agent_ref: str | None):
    query = owned(CostRecord.select(), CostRecord, owner_id)
    if since is not None:
        query = query.where(CostRecord.timestamp >= since)
    if agent_ref is not None:  # an agent's id, or its name when the cost was recorded
        query = query.where(
            (CostRecord.agent_id == agent_ref) | (CostRecord.agent_name == agent_ref)
        )
    return query


def list_costs(
    owner_id: str | None, *, since: datetime | None, agent_ref: str | None, limit: int
) -> tuple[list[CostRecord], float]:
    """The newest ``limit`` records and the total cost of every matching record: the
    owner's kept sum when nothing filters them, else a sum over the matches."""
    query = _filtered(owner_id, since, agent_ref)
    if owner_id is not None and since is None and agent_ref is None:
        total = counts.amount(owner_id, "cost")
    else:
        total = query.select(peewee.fn.COALESCE(peewee.fn.SUM(CostRecord.cost_usd), 0)).scalar()
    rows = fetch(query.order_by(CostRecord.timestamp.desc(), CostRecord.id.desc()).limit(limit))
    return rows, round(float(total), 10)


def summarize(owner_id: str | None, since: datetime) -> dict[str, object]:
    query = _filtered(owner_id, since, None)
    by: dict[str, dict[str, float]] = {}
    for column, key in (
        (CostRecord.agent_name, "by_agent"),
        (CostRecord.provider, "by_provider"),
        (CostRecord.model, "by_model"),
    ):
        grouped = query.select(column, peewee.fn.SUM(CostRecord.cost_usd).alias("cost")).group_by(
            column
        )
        by[key] = {getattr(row, column.name): round(row.cost, 10) for row in grouped}
    total = round(sum(by["by_provider"].values()), 10)
    return {"total_cost": total, **by}
