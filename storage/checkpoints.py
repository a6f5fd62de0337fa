"""Checkpoints: after every step of a run (each provider turn, each tool result) the
state needed to continue from there. Recovery, restore and fork all start from one.

``state`` holds ``messages`` (the conversation as the provider sees it) and whatever
else the engine needs to continue (usage so far, tool calls still to run, an approval
awaited). A checkpoint is written in the same transaction as what the step produced
(its cost record, its session messages), so a crash never leaves one without the other.
"""

from __future__ import annotations

from typing import Any

import peewee

from cadre.errors import NotFound
from storage.db import BaseModel
from storage.executions import Execution
from storage.fields import JSONField, UTCDateTimeField
from storage.ids import new_id, utcnow


class Checkpoint(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    execution = peewee.ForeignKeyField(Execution, backref="checkpoints", on_delete="CASCADE")
    session_id = peewee.CharField(max_length=40, null=True, index=True)
    step = peewee.IntegerField()
    state = JSONField()
    created_at = UTCDateTimeField(default=utcnow)

    class Meta:
        indexes = ((("execution", "step"), True),)

    @property
    def run_id(self) -> str:
        return self.execution_id


def save(execution_id: str, session_id: str | None, step: int, state: dict[str, Any]) -> Checkpoint:
    return Checkpoint.create(
        id=new_id("ckpt"), execution=execution_id, session_id=session_id, step=step, state=state
    )


def latest(execution_id: str) -> Checkpoint | None:
    return (
        Checkpoint.select()
        .where(Checkpoint.execution == execution_id)
        .order_by(Checkpoint.step.desc())
        .first()
    )


def get_checkpoint(checkpoint_id: str, owner_id: str | None) -> Checkpoint:
    """The checkpoint, if its run belongs to ``owner_id`` (``None``: any); else a 404."""
    query = Checkpoint.select().join(Execution).where(Checkpoint.id == checkpoint_id)
    if owner_id is not None:
        query = query.where(Execution.owner == owner_id)
    found = query.first()
    if found is None:
        raise NotFound(f"No checkpoint '{checkpoint_id}'.", error="checkpoint_not_found")
    return found
