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
from storage import costs, sessions
from storage.db import BaseModel, database
from storage.executions import Execution, hold_lease
from storage.fields import JSONField, UTCDateTimeField
from storage.ids import new_id, utcnow
from storage.queries import Page, paginate


class Checkpoint(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    # Looked up by execution through the (execution_id, step) index, which leads with it.
    execution = peewee.ForeignKeyField(
        Execution, backref="checkpoints", on_delete="CASCADE", index=False
    )
    session_id = peewee.CharField(max_length=40, null=True)  # shown, never looked up by
    step = peewee.IntegerField()
    state = JSONField()
    created_at = UTCDateTimeField(default=utcnow)

    class Meta:
        indexes = ((("execution", "step"), True),)

    @property
    def run_id(self) -> str:
        return self.execution_id


def save(execution_id: str, session_id: str | None, step: int, state: dict[str, Any]) -> Checkpoint:
    return Checkpoint.insert_row(
        id=new_id("ckpt"),
        execution=execution_id,
        session_id=session_id,
        step=step,
        state=state,
        created_at=utcnow(),
    )


def save_step(
    execution: Execution,
    step: int | None,
    state: dict[str, Any],
    *,
    bill: dict[str, Any] | None = None,
    totals: dict[str, Any] | None = None,
    session_messages: list[dict[str, Any]] | None = None,
    tool_call: dict[str, Any] | None = None,
) -> Checkpoint | None:
    """One step, all or nothing: the provider call's cost record and the execution's new
    totals (``bill``: ``prompt_tokens``, ``completion_tokens``, ``cost_usd``, ``priced``),
    for a session turn its new messages, tool call and running totals, and the checkpoint.
    ``state["session_seq"]`` becomes the session's last message after the step. With
    ``step`` None only the bill is stored (a call cut short: no step to continue from).
    Fenced: ``LeaseLost``, nothing stored, when another worker adopted the run meanwhile."""
    with database.atomic():
        hold_lease(execution.id, **(totals or {}))  # the totals set by the fencing statement
        return store_step(
            execution,
            step,
            state,
            bill=bill,
            session_messages=session_messages,
            tool_call=tool_call,
        )


def store_step(
    execution: Execution,
    step: int | None,
    state: dict[str, Any],
    *,
    bill: dict[str, Any] | None = None,
    session_messages: list[dict[str, Any]] | None = None,
    tool_call: dict[str, Any] | None = None,
) -> Checkpoint | None:
    """``save_step`` without its fencing statement and transaction: inside a caller's
    transaction that fenced the run and set its totals already (a run's last step, written
    with its end by ``executions.append_events``)."""
    session_id = execution.session_id
    if bill is not None:
        costs.bill_execution(execution, **bill)
    if session_id is not None:
        if session_messages:
            sessions.append_messages(session_id, session_messages)
        if tool_call is not None:
            sessions.record_tool_call(session_id, run_id=execution.id, **tool_call)
        if bill is not None:
            sessions.add_usage(
                session_id, bill["prompt_tokens"], bill["completion_tokens"], bill["cost_usd"]
            )
        state = {**state, "session_seq": sessions.last_sequence(session_id)}
    if step is None:
        return None
    return save(execution.id, session_id, step, state)


def decide(checkpoint: Checkpoint, awaiting: dict[str, Any]) -> bool:
    """Record the decision on the call a run awaits (in its last checkpoint) and queue the
    run again, together; False when the run was not awaiting any more (decided, cancelled)."""
    from storage.executions import leave_awaiting

    with database.atomic():
        if not leave_awaiting(checkpoint.execution_id, "queued"):
            return False
        state = {**checkpoint.state, "awaiting": awaiting}
        Checkpoint.update(state=state).where(Checkpoint.id == checkpoint.id).execute()
    return True


def list_checkpoints(execution_id: str, limit: int, offset: int, after: str | None = None) -> Page:
    """A run's checkpoints, oldest (step 0) first."""
    query = Checkpoint.select().where(Checkpoint.execution == execution_id)
    keys = (Checkpoint.step, Checkpoint.id)
    return paginate(query, keys, limit=limit, offset=offset, after=after)


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
