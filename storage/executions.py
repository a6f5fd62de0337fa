"""Executions and their events: every event is stored with a per-execution sequence number."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import peewee

from cadre.errors import Conflict, NotFound
from storage import counts
from storage.db import BaseModel, database
from storage.fields import JSONField, UTCDateTimeField
from storage.ids import new_id, utcnow
from storage.queries import Page, owned, paginate, rarely_true
from storage.users import User

TERMINAL = frozenset({"completed", "failed", "cancelled"})
# Not terminal, but no worker holds it: a run stopped for a tool approval lives only in
# its last checkpoint until someone decides.
AWAITING = frozenset({"requires_action"})
# The rest: unfinished and held by a worker (or waiting for one). Named rather than
# "not terminal or awaiting", so that the heartbeat's scans for stale runs use the
# status index instead of reading every execution ever run.
HELD = frozenset({"queued", "running", "paused"})
# The lease holder's fencing token: every lease this process takes carries it, and it
# refreshes, bills and checkpoints only the runs whose row still does.
LEASE_OWNER = secrets.token_hex(8)


class LeaseLost(Exception):
    """Another worker adopted the run: this one must stop it without writing anything."""


class Execution(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    # Looked up by owner through the wider indexes below (``Meta``), which lead with it.
    owner = peewee.ForeignKeyField(User, backref="executions", on_delete="CASCADE", index=False)
    agent_id = peewee.CharField(max_length=40)
    agent_name = peewee.CharField(max_length=64)
    task = peewee.TextField()
    mode = peewee.CharField(max_length=16)
    inputs = JSONField()
    config = JSONField()  # the agent's effective values when the execution was created
    provider = peewee.CharField(max_length=32)
    model = peewee.CharField(max_length=128)
    cost_limit = peewee.FloatField(null=True)
    timeout = peewee.IntegerField(null=True)
    status = peewee.CharField(max_length=16, default="queued", index=True)
    session_id = peewee.CharField(max_length=40, null=True)  # a session's turn (indexed below)
    restored_from = peewee.CharField(max_length=40, null=True)  # the checkpoint it began at
    stop_reason = peewee.CharField(max_length=32, null=True)
    result = JSONField(null=True)
    error = peewee.TextField(null=True)
    prompt_tokens = peewee.IntegerField(default=0)
    completion_tokens = peewee.IntegerField(default=0)
    cost_usd = peewee.FloatField(default=0.0)
    steps = peewee.IntegerField(default=0)
    latency_ms = peewee.IntegerField(null=True)
    time_to_first_token_ms = peewee.IntegerField(null=True)
    idempotency_key = peewee.CharField(max_length=255, null=True)
    request_hash = peewee.CharField(max_length=64, null=True)
    control = peewee.CharField(max_length=16, null=True)  # cancel | pause, asked by any worker
    heartbeat_at = UTCDateTimeField(null=True)
    lease_owner = peewee.CharField(max_length=16, null=True)  # ``LEASE_OWNER`` of the holder
    created_at = UTCDateTimeField(default=utcnow)
    started_at = UTCDateTimeField(null=True)
    completed_at = UTCDateTimeField(null=True)

    class Meta:
        indexes = ((("owner", "created_at", "id"), False),)

    @property
    def usage(self) -> dict[str, Any]:
        """Tokens, cost and timings, as the API's ``Usage`` reports them."""
        return usage_report(self.__data__)


def usage_report(values: Mapping[str, Any]) -> dict[str, Any]:
    """``Execution.usage`` of an execution's column ``values`` (by field name)."""
    prompt_tokens, completion_tokens = values["prompt_tokens"], values["completion_tokens"]
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "cost_usd": values["cost_usd"],
        "currency": "USD",
        "latency_ms": values.get("latency_ms"),
        "time_to_first_token_ms": values.get("time_to_first_token_ms"),
    }


# Only executions created with an Idempotency-Key are looked up by it, and only a
# session's turns by session: the others stay out of these indexes (migrations 0011, 0013).
Execution.add_index(
    Execution.index(
        Execution.owner,
        Execution.idempotency_key,
        unique=True,
        where=Execution.idempotency_key.is_null(False),
        name="execution_owner_id_idempotency_key",
    )
)
Execution.add_index(
    Execution.index(
        Execution.session_id,
        where=Execution.session_id.is_null(False),
        name="execution_session_id",
    )
)


class ExecutionEvent(BaseModel):
    # Keyed by (execution, seq), as every read finds them (on SQLite a ``WITHOUT ROWID``
    # table: migration 0013): no index of its own.
    execution = peewee.ForeignKeyField(
        Execution, backref="events", on_delete="CASCADE", index=False
    )
    seq = peewee.IntegerField()
    type = peewee.CharField(max_length=32)
    data = JSONField()
    created_at = UTCDateTimeField(default=utcnow)

    class Meta:
        primary_key = peewee.CompositeKey("execution", "seq")


def create_execution(*, opening: dict[str, Any] | None = None, **fields: Any) -> Execution:
    """Insert a queued execution, or, given its ``opening`` (the state of its step 0), one
    that starts as it is created: running, with that checkpoint, in the same transaction.
    A concurrent duplicate Idempotency-Key is a 409."""
    from storage import checkpoints  # it reads this module's models

    now = utcnow()
    if opening is not None:
        fields = {**fields, "status": "running", "started_at": now}
    try:
        with database.atomic():
            execution = Execution.insert_row(
                id=new_id("exec"), heartbeat_at=now, lease_owner=LEASE_OWNER, **fields
            )
            counts.bump(execution.owner_id, "execution")
            if opening is not None:
                checkpoints.save(execution.id, None, 0, opening)
            return execution
    except peewee.IntegrityError as exc:
        raise Conflict(
            "An execution with this Idempotency-Key is being created.", error="idempotency_conflict"
        ) from exc


def find_idempotent(owner_id: str, key: str) -> Execution | None:
    return Execution.get_or_none((Execution.owner == owner_id) & (Execution.idempotency_key == key))


def get_execution(execution_id: str, owner_id: str | None) -> Execution:
    found = owned(Execution.select(), Execution, owner_id).where(Execution.id == execution_id)
    execution = found.first()
    if execution is None:
        raise NotFound(f"No execution '{execution_id}'.", error="execution_not_found")
    return execution


def list_executions(
    owner_id: str,
    *,
    agent_ref: str | None,
    status: str | None,
    limit: int,
    offset: int,
    after: str | None = None,
) -> Page:
    """Newest first."""
    query = owned(Execution.select(), Execution, owner_id)
    unfiltered = agent_ref is None and status is None
    if agent_ref is not None:  # an agent's id, or its name when the execution started
        query = query.where((Execution.agent_id == agent_ref) | (Execution.agent_name == agent_ref))
    if status is not None:
        query = query.where(Execution.status == status)
    return paginate(
        query,
        (Execution.created_at, Execution.id),
        limit=limit,
        offset=offset,
        after=after,
        descending=True,
        count=(lambda: counts.count(owner_id, "execution")) if unfiltered else None,
    )


def update_execution(execution_id: str, **fields: Any) -> None:
    """Set columns of one execution (a prepared statement: the engine calls this a few
    times per execution, where building the Peewee query cost more than running it)."""
    names = tuple(sorted(fields))
    database.execute_sql(
        _update_sql(names, database.param), [*_values(names, fields), execution_id]
    )


def _values(names: tuple[str, ...], fields: dict[str, Any]) -> list[Any]:
    columns = Execution._meta.fields
    return [columns[name].db_value(fields[name]) for name in names]


def append_events(
    events: list[tuple[str, int, str, str | dict[str, Any]]],
    progress: dict[str, dict[str, Any]] | None = None,
    writes: dict[str, list[Callable[[], Any]]] | None = None,
) -> set[str]:
    """Store ``(execution_id, seq, type, data)`` rows, ``data`` as JSON text (or a value to
    encode), and in the same transaction each execution's ``progress`` (its usage so far,
    or its end) and its other ``writes`` (a run's last step: ``checkpoints.store_step``).
    Fenced: progress is written only while this process holds the lease; an execution
    whose progress was not written gets none of these events or writes either, and is
    returned.

    The statements are built once (events run with ``executemany``): this runs for every
    batch of streamed tokens, where building Peewee queries cost more than the writes.
    Executions are updated in id order, as heartbeats lock them, so the two never deadlock.
    """
    now = ExecutionEvent.created_at.db_value(utcnow())
    rows = [
        (execution_id, seq, type_, data if isinstance(data, str) else _json(data), now)
        for execution_id, seq, type_, data in events
    ]
    fences = {execution_id: {"lease_owner": LEASE_OWNER} for execution_id in writes or ()}
    updates = [  # in id order: no deadlock with heartbeats
        (execution_id, names, [*_values(names, values), execution_id, LEASE_OWNER])
        for execution_id, values in sorted({**fences, **(progress or {})}.items())
        for names in [tuple(sorted(values))]
    ]
    mark = database.param
    with database.atomic():
        cursor = database.cursor()
        fenced: set[str] = set()
        for execution_id, names, params in updates:
            cursor.execute(_fenced_update_sql(names, mark), params)
            if cursor.rowcount == 0:  # adopted by another worker: its events are not ours
                fenced.add(execution_id)
        for execution_id, calls in (writes or {}).items():
            if execution_id not in fenced:
                for write in calls:
                    write()
        if fenced:
            rows = [row for row in rows if row[0] not in fenced]
        if rows:
            cursor.executemany(_insert_events_sql(mark), rows)
    return fenced


def _json(value: Any) -> str:
    return ExecutionEvent.data.db_value(value)


@functools.cache
def _insert_events_sql(mark: str) -> str:
    meta = ExecutionEvent._meta
    columns = ", ".join(
        f'"{meta.fields[name].column_name}"'
        for name in ("execution", "seq", "type", "data", "created_at")
    )
    return f'INSERT INTO "{meta.table_name}" ({columns}) VALUES ({", ".join([mark] * 5)})'


@functools.cache
def _update_sql(names: tuple[str, ...], mark: str) -> str:
    meta = Execution._meta
    assignments = ", ".join(f'"{meta.fields[name].column_name}" = {mark}' for name in names)
    key = meta.primary_key.column_name
    return f'UPDATE "{meta.table_name}" SET {assignments} WHERE "{key}" = {mark}'


_NOT_ENDED = '"status" NOT IN ({})'.format(", ".join(f"'{s}'" for s in sorted(TERMINAL)))


@functools.cache
def _fenced_update_sql(names: tuple[str, ...], mark: str) -> str:
    """``_update_sql`` only while this process holds the lease (its owner the last mark)."""
    owner = Execution._meta.fields["lease_owner"].column_name
    return f'{_update_sql(names, mark)} AND "{owner}" = {mark}'


def events_after(execution_id: str, after: int, limit: int) -> list[ExecutionEvent]:
    return list(
        ExecutionEvent.select()
        .where((ExecutionEvent.execution == execution_id) & (ExecutionEvent.seq > after))
        .order_by(ExecutionEvent.seq)
        .limit(limit)
    )


def count_events(execution_id: str) -> int:
    return ExecutionEvent.select().where(ExecutionEvent.execution == execution_id).count()


def changed_after(execution_id: str, seq: int) -> bool:
    """Whether a status change (or the end) of the execution was recorded after ``seq``."""
    return (
        ExecutionEvent.select()
        .where(
            (ExecutionEvent.execution == execution_id)
            & (ExecutionEvent.seq > seq)
            & (ExecutionEvent.type.in_(("status", "complete")))
        )
        .exists()
    )


def last_seq(execution_id: str) -> int:
    value = (
        ExecutionEvent.select(peewee.fn.MAX(ExecutionEvent.seq))
        .where(ExecutionEvent.execution == execution_id)
        .scalar()
    )
    return value or 0


def touch_heartbeats(execution_ids: list[str]) -> None:
    """Refresh the leases this process still holds among these runs. On PostgreSQL the
    rows are locked in id order first, the order ``append_events`` updates them in: the
    two never deadlock. One prepared statement: a worker beats over every run it holds
    each second, where building a Peewee query of a thousand ids cost more than the update."""
    if not execution_ids:
        return
    locked = isinstance(database.obj, peewee.PostgresqlDatabase)
    sql = _touch_sql(database.param, _marks(len(execution_ids)), locked)
    now = Execution.heartbeat_at.db_value(utcnow())
    database.execute_sql(sql, [now, *execution_ids, LEASE_OWNER])


def _marks(count: int) -> str:
    return ", ".join([database.param] * count)


def _touch_sql(mark: str, ids: str, locked: bool) -> str:
    table = Execution._meta.table_name
    held = f'SELECT "id" FROM "{table}" WHERE "id" IN ({ids}) AND "lease_owner" = {mark}'
    if locked:
        held += ' ORDER BY "id" FOR NO KEY UPDATE'
    return f'UPDATE "{table}" SET "heartbeat_at" = {mark} WHERE "id" IN ({held})'


def stale_unfinished(older_than: datetime) -> list[Execution]:
    """Executions nobody is running any more: unfinished (and not awaiting an approval,
    which no worker holds), with a heartbeat older than that."""
    return list(
        Execution.select().where(
            rarely_true(Execution.status.in_(list(HELD)))
            & (Execution.heartbeat_at.is_null() | (Execution.heartbeat_at < older_than))
        )
    )


def touch_and_read_controls(execution_ids: list[str]) -> tuple[dict[str, str], set[str]]:
    """Refresh the heartbeat of these executions and return the controls (cancel, pause…)
    other workers asked of them, and those whose lease another process took (to stop at
    once): one transaction, two statements, however many run. Only the rows that ask for
    something are read back (with a thousand runs, reading them all stalled the beat)."""
    if not execution_ids:
        return {}, set()
    table, mark = Execution._meta.table_name, database.param
    asking = (
        f'SELECT "id", "control", "lease_owner" FROM "{table}" WHERE "id" IN '
        f'({_marks(len(execution_ids))}) AND ("control" IS NOT NULL OR "lease_owner" IS NULL '
        f'OR "lease_owner" <> {mark})'
    )
    with database.atomic():
        touch_heartbeats(execution_ids)
        rows = database.execute_sql(asking, [*execution_ids, LEASE_OWNER]).fetchall()
    controls, lost = {}, set()
    for execution_id, control, lease_owner in rows:
        if lease_owner != LEASE_OWNER:
            lost.add(execution_id)
        elif control is not None:
            controls[execution_id] = control
    return controls, lost


def hold_lease(execution_id: str, **fields: Any) -> None:
    """Fence a write of the run (in the caller's transaction): raise ``LeaseLost`` unless
    this process still holds its lease, so the transaction rolls back. ``fields`` (the
    run's new totals, or its start) are set by the same prepared statement; a status
    among them is never set on a run that ended (a write a cancel left running in its
    thread, committing after the end, is refused whole)."""
    names = tuple(sorted(fields)) or ("lease_owner",)
    values = fields or {"lease_owner": LEASE_OWNER}
    sql = _fenced_update_sql(names, database.param)
    if "status" in fields:
        sql = f"{sql} AND {_NOT_ENDED}"
    cursor = database.execute_sql(sql, [*_values(names, values), execution_id, LEASE_OWNER])
    if not cursor.rowcount:
        raise LeaseLost(execution_id)


def take_control(execution_id: str) -> str | None:
    """The control request left for the execution, cleared: of a heartbeat and a Redis
    poke reading it at once, exactly one gets it."""
    control = Execution.select(Execution.control).where(Execution.id == execution_id).scalar()
    if control is None:
        return None
    taken = (
        Execution.update(control=None)
        .where((Execution.id == execution_id) & (Execution.control == control))
        .execute()
    )
    return control if taken else None


def count_with_status(status: str) -> int:
    return Execution.select().where(Execution.status == status).count()


def get_status(execution_id: str) -> str | None:
    return Execution.select(Execution.status).where(Execution.id == execution_id).scalar()


def adopt(execution_id: str, older_than: datetime) -> bool:
    """Take over a stale execution; of several workers trying at once, exactly one wins."""
    updated = (
        Execution.update(heartbeat_at=utcnow(), lease_owner=LEASE_OWNER)
        .where(
            (Execution.id == execution_id)
            & Execution.status.not_in(list(TERMINAL | AWAITING))
            & (Execution.heartbeat_at.is_null() | (Execution.heartbeat_at < older_than))
        )
        .execute()
    )
    return updated == 1


def release_to_queue(execution_id: str) -> None:
    """Free the lease of an execution handed to the queue (new, or approved): the worker
    whose job claims it adopts it. One awaiting an approval is queued again."""
    Execution.update(
        heartbeat_at=None,
        lease_owner=None,
        status=peewee.Case(
            None, [(Execution.status.in_(list(AWAITING)), "queued")], Execution.status
        ),
    ).where((Execution.id == execution_id) & Execution.status.not_in(list(TERMINAL))).execute()


def stale_unqueued(older_than: datetime) -> list[str]:
    """Unfinished executions whose lease is free or stale and that no queued job will
    deliver (PostgreSQL, with Procrastinate's tables): those to queue again. Paused ones
    with a free lease wait for their resume instead."""
    query = Execution.select(Execution.id).where(
        rarely_true(Execution.status.in_(list(HELD)))
        & (
            (Execution.heartbeat_at.is_null() & (Execution.status != "paused"))
            | (Execution.heartbeat_at < older_than)
        )
        & ~peewee.fn.EXISTS(
            peewee.SQL(
                "SELECT 1 FROM procrastinate_jobs j WHERE j.queueing_lock = t1.id "
                "AND j.status = 'todo'"
            )
        )
    )
    return [row.id for row in query]


def free_lease(execution_id: str, **fields: Any) -> None:
    """Give up the lease of an execution this process adopted only to change its state."""
    Execution.update(heartbeat_at=None, lease_owner=None, **fields).where(
        Execution.id == execution_id
    ).execute()


def hand_back(execution_id: str) -> None:
    """Free the lease of a run this process stops unfinished (shutdown), if it still holds
    it: one adopted by another worker meanwhile stays theirs."""
    Execution.update(heartbeat_at=None, lease_owner=None).where(
        (Execution.id == execution_id) & (Execution.lease_owner == LEASE_OWNER)
    ).execute()


def leave_awaiting(execution_id: str, status: str) -> bool:
    """Move an execution out of ``requires_action``; False when it was not (any more)."""
    updated = (
        Execution.update(
            status=status, heartbeat_at=utcnow(), lease_owner=LEASE_OWNER, control=None
        )
        .where((Execution.id == execution_id) & (Execution.status.in_(list(AWAITING))))
        .execute()
    )
    return updated == 1


def awaiting_of_disabled() -> list[str]:
    """Runs awaiting an approval whose account is disabled (no worker holds them to notice)."""
    query = (
        Execution.select(Execution.id)
        .join(User)
        .where(rarely_true(Execution.status.in_(list(AWAITING))) & (User.is_active == False))  # noqa: E712
    )
    return [row.id for row in query]
