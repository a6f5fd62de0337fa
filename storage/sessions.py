"""Sessions (multi-turn conversations with a working directory), their messages and
tool calls, and session templates.

A session's turns are executions with ``session_id`` set. At most one turn holds a
session at a time: ``claim_turn`` is a conditional UPDATE, so of many concurrent
claims exactly one wins, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import PurePath
from typing import Any

import peewee

from cadre.errors import Conflict, Forbidden, NotFound
from storage import counts
from storage.db import BaseModel, database
from storage.executions import LEASE_OWNER, TERMINAL, Execution
from storage.fields import JSONField, UTCDateTimeField
from storage.ids import new_id, utcnow
from storage.queries import Page, owned, paginate
from storage.users import User


class SessionTemplate(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    owner = peewee.ForeignKeyField(User, backref="session_templates", on_delete="CASCADE")
    name = peewee.CharField(max_length=128)
    description = peewee.TextField(default="")
    category = peewee.CharField(max_length=64, null=True, index=True)
    sdk_options = JSONField()
    default_mode = peewee.CharField(max_length=16, default="interactive")
    is_public = peewee.BooleanField(default=False, index=True)
    created_at = UTCDateTimeField(default=utcnow, index=True)
    updated_at = UTCDateTimeField(default=utcnow)


class Session(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    owner = peewee.ForeignKeyField(User, backref="sessions", on_delete="CASCADE")
    name = peewee.CharField(max_length=128)
    agent_id = peewee.CharField(max_length=40, null=True)  # None: the default echo agent
    mode = peewee.CharField(max_length=16, default="interactive")  # interactive | forked
    status = peewee.CharField(max_length=16, default="created", index=True)
    sdk_options = JSONField()  # allowed_tools (Cadre names), permission_mode, model?, ...
    template_id = peewee.CharField(max_length=40, null=True)
    parent_session_id = peewee.CharField(max_length=40, null=True)
    is_fork = peewee.BooleanField(default=False)
    working_directory_path = peewee.TextField()
    current_run_id = peewee.CharField(max_length=40, null=True)  # the turn holding it
    total_messages = peewee.IntegerField(default=0)
    total_tool_calls = peewee.IntegerField(default=0)
    total_cost_usd = peewee.FloatField(default=0.0)
    api_input_tokens = peewee.IntegerField(default=0)
    api_output_tokens = peewee.IntegerField(default=0)
    archive_id = peewee.CharField(max_length=40, null=True)
    archive_path = peewee.TextField(null=True)
    archive_size_bytes = peewee.IntegerField(null=True)
    archive_file_count = peewee.IntegerField(null=True)
    created_at = UTCDateTimeField(default=utcnow, index=True)
    started_at = UTCDateTimeField(null=True)
    last_activity_at = UTCDateTimeField(null=True)
    completed_at = UTCDateTimeField(null=True)

    @property
    def user_id(self) -> str:
        return self.owner_id


class SessionMessage(BaseModel):
    """One message of a session's history, in order: what the model sees next turn.

    ``content`` is ``{"content": text}`` (the seed's shape); an assistant message that
    asked for tools adds ``tool_calls``; a tool message adds ``tool_call_id``/``tool_name``.
    """

    id = peewee.CharField(primary_key=True, max_length=40)
    session = peewee.ForeignKeyField(Session, backref="messages", on_delete="CASCADE")
    sequence_number = peewee.IntegerField()
    message_type = peewee.CharField(max_length=16)  # user | assistant | tool
    content = JSONField()
    model = peewee.CharField(max_length=128, null=True)
    run_id = peewee.CharField(max_length=40, null=True, index=True)
    created_at = UTCDateTimeField(default=utcnow)

    class Meta:
        indexes = ((("session", "sequence_number"), True),)


class SessionToolCall(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    session = peewee.ForeignKeyField(Session, backref="tool_calls", on_delete="CASCADE")
    run_id = peewee.CharField(max_length=40, index=True)
    call_id = peewee.CharField(max_length=128)  # the model's id for the call, within its run
    tool_name = peewee.CharField(max_length=64)
    tool_input = JSONField()
    tool_output = JSONField(null=True)
    status = peewee.CharField(max_length=16)  # pending | success | error | denied
    duration_ms = peewee.IntegerField(null=True)
    created_at = UTCDateTimeField(default=utcnow, index=True)


def create_session(**fields: Any) -> Session:
    fields.setdefault("id", new_id("sess"))
    with database.atomic():
        session = Session.create(**fields)
        counts.bump(session.owner_id, "session")
    return session


def get_session(session_id: str, owner_id: str | None) -> Session:
    """The session, if ``owner_id`` owns it (``None``: any); another user's is a 404."""
    found = owned(Session.select(), Session, owner_id).where(Session.id == session_id).first()
    if found is None:
        raise NotFound(f"No session '{session_id}'.", error="session_not_found")
    return found


def history(session_id: str) -> list[SessionMessage]:
    return list(
        SessionMessage.select()
        .where(SessionMessage.session == session_id)
        .order_by(SessionMessage.sequence_number)
    )


def append_messages(session_id: str, messages: list[dict[str, Any]]) -> list[SessionMessage]:
    """Append ``messages`` (``message_type``, ``content``, ``model``?, ``run_id``?) in order
    and bump the session's counters; call inside the caller's transaction when it has one."""
    with database.atomic():
        last = (
            SessionMessage.select(peewee.fn.MAX(SessionMessage.sequence_number))
            .where(SessionMessage.session == session_id)
            .scalar()
        ) or 0
        now = utcnow()
        rows = [
            SessionMessage.create(
                id=new_id("msg"),
                session=session_id,
                sequence_number=last + i,
                created_at=now,
                **message,
            )
            for i, message in enumerate(messages, start=1)
        ]
        Session.update(
            total_messages=Session.total_messages + len(rows), last_activity_at=now
        ).where(Session.id == session_id).execute()
    return rows


def last_sequence(session_id: str) -> int:
    return (
        SessionMessage.select(peewee.fn.MAX(SessionMessage.sequence_number))
        .where(SessionMessage.session == session_id)
        .scalar()
    ) or 0


def record_tool_call(session_id: str, **fields: Any) -> SessionToolCall:
    """One tool call of a turn (``run_id``, ``call_id``, ``tool_name``, ``tool_input``,
    ``tool_output``, ``status``, ``duration_ms``), counted in the session's totals."""
    with database.atomic():
        row = SessionToolCall.create(id=new_id("tc"), session=session_id, **fields)
        Session.update(
            total_tool_calls=Session.total_tool_calls + 1, last_activity_at=utcnow()
        ).where(Session.id == session_id).execute()
    return row


def add_usage(session_id: str, prompt_tokens: int, completion_tokens: int, cost_usd: float) -> None:
    """One provider call of a turn, in the session's running totals."""
    Session.update(
        api_input_tokens=Session.api_input_tokens + prompt_tokens,
        api_output_tokens=Session.api_output_tokens + completion_tokens,
        total_cost_usd=Session.total_cost_usd + cost_usd,
        last_activity_at=utcnow(),
    ).where(Session.id == session_id).execute()


def _holder_gone():
    """Turns that hold a session but ended without letting go (their worker died)."""
    from storage.executions import TERMINAL, Execution

    return Execution.select(Execution.id).where(Execution.status.in_(list(TERMINAL)))


def claim_turn(session_id: str, run_id: str) -> bool:
    """Let ``run_id`` hold the session if no other turn does; True when it now holds it."""
    updated = (
        Session.update(current_run_id=run_id)
        .where(
            (Session.id == session_id)
            & (
                Session.current_run_id.is_null()
                | (Session.current_run_id == run_id)
                | Session.current_run_id.in_(_holder_gone())
            )
        )
        .execute()
    )
    return updated == 1


def take_turn(session_id: str, run_id: str) -> bool:
    """Claim the session for ``run_id`` if it is the session's oldest queued turn (or holds
    it already): turns run one at a time, in the order they were asked. The session
    becomes ``active``; True when ``run_id`` now holds it."""
    from storage.executions import Execution

    holder = Session.select(Session.current_run_id).where(Session.id == session_id).scalar()
    if holder != run_id:
        first = (
            Execution.select(Execution.id)
            .where((Execution.session_id == session_id) & (Execution.status == "queued"))
            .order_by(Execution.created_at, Execution.id)
            .scalar()
        )
        if first is not None and first != run_id:
            return False
    if not claim_turn(session_id, run_id):
        return False
    _mark_active(session_id, utcnow())
    return True


def _mark_active(session_id: str, now: datetime) -> None:
    """A turn runs: ``active`` (unless archived), ``started_at`` set the first time."""
    Session.update(
        status="active",
        started_at=peewee.fn.COALESCE(Session.started_at, now),
        last_activity_at=now,
    ).where(
        (Session.id == session_id) & Session.status.in_(["created", "active", "completed"])
    ).execute()


def release_turn(session_id: str, run_id: str) -> None:
    Session.update(current_run_id=None).where(
        (Session.id == session_id) & (Session.current_run_id == run_id)
    ).execute()


# -- sessions ---------------------------------------------------------------------------


def count_sessions(owner_id: str) -> int:
    return counts.count(owner_id, "session")


def list_sessions(
    owner_id: str,
    *,
    status: str | None,
    mode: str | None,
    limit: int,
    offset: int,
    after: str | None = None,
) -> Page:
    query = owned(Session.select(), Session, owner_id)
    if status is not None:
        query = query.where(Session.status == status)
    if mode is not None:
        query = query.where(Session.mode == mode)
    keys = (Session.created_at, Session.id)
    unfiltered = status is None and mode is None
    return paginate(
        query,
        keys,
        limit=limit,
        offset=offset,
        after=after,
        descending=True,
        count=(lambda: count_sessions(owner_id)) if unfiltered else None,
    )


def list_messages(session_id: str, limit: int, offset: int, after: str | None = None) -> Page:
    query = SessionMessage.select().where(SessionMessage.session == session_id)
    keys = (SessionMessage.sequence_number, SessionMessage.id)
    return paginate(query, keys, limit=limit, offset=offset, after=after)


def list_tool_calls(session_id: str, limit: int, offset: int, after: str | None = None) -> Page:
    query = SessionToolCall.select().where(SessionToolCall.session == session_id)
    keys = (SessionToolCall.created_at, SessionToolCall.id)
    return paginate(query, keys, limit=limit, offset=offset, after=after)


def run_messages(run_id: str) -> list[SessionMessage]:
    return list(
        SessionMessage.select()
        .where(SessionMessage.run_id == run_id)
        .order_by(SessionMessage.sequence_number)
    )


def update_session(session_id: str, **fields: Any) -> None:
    Session.update(**fields).where(Session.id == session_id).execute()


def create_turn(
    session_id: str, claim: bool, take_over: str | None = None, **fields: Any
) -> Execution:
    """Create a session turn's execution; with ``claim``, only if it can hold the session
    now (else a 409 ``session_busy``), claim and row in one transaction so a loser leaves
    no execution behind. ``take_over``: the (stopped) turn whose claim it may take."""
    execution_id = new_id("exec")
    with database.atomic():
        if claim and not _claim(session_id, execution_id, take_over):
            raise Conflict(
                "A turn of this session is running; wait for it, or send the query with "
                "multitask_strategy enqueue, interrupt or rollback.",
                error="session_busy",
                details={"multitask_strategy": "reject"},
            )
        now = utcnow()
        execution = Execution.create(
            id=execution_id,
            session_id=session_id,
            heartbeat_at=now,
            lease_owner=LEASE_OWNER,
            **fields,
        )
        _mark_active(session_id, now)
    return execution


def _claim(session_id: str, run_id: str, take_over: str | None) -> bool:
    if take_over is None:
        return claim_turn(session_id, run_id)
    holder = Session.current_run_id
    updated = (
        Session.update(current_run_id=run_id)
        .where((Session.id == session_id) & (holder.is_null() | (holder == take_over)))
        .execute()
    )
    return updated == 1


def unfinished_turns(session_id: str) -> list[Execution]:
    """The session's turns not yet over (running, waiting for it, paused, awaiting approval)."""
    return list(
        Execution.select()
        .where((Execution.session_id == session_id) & Execution.status.not_in(list(TERMINAL)))
        .order_by(Execution.created_at, Execution.id)
    )


def discard_run(session_id: str, run_id: str) -> None:
    """Forget a rolled-back turn: its messages and tool calls, and the counts they made."""
    with database.atomic():
        messages = (
            SessionMessage.delete()
            .where((SessionMessage.session == session_id) & (SessionMessage.run_id == run_id))
            .execute()
        )
        calls = (
            SessionToolCall.delete()
            .where((SessionToolCall.session == session_id) & (SessionToolCall.run_id == run_id))
            .execute()
        )
        session = Session.get_by_id(session_id)
        Session.update(
            total_messages=max(0, session.total_messages - messages),
            total_tool_calls=max(0, session.total_tool_calls - calls),
        ).where(Session.id == session_id).execute()


def delete_session(session_id: str) -> None:
    """The session and its history (cascade); its executions and cost records stay."""
    with database.atomic():
        owners = Session.select(Session.owner).where(Session.id == session_id).tuples()
        for (owner_id,) in owners:
            Session.delete().where(Session.id == session_id).execute()
            counts.bump(owner_id, "session", -1)


# -- templates --------------------------------------------------------------------------


def _visible_templates(owner_id: str) -> peewee.ModelSelect:
    return SessionTemplate.select().where(
        (SessionTemplate.owner == owner_id) | (SessionTemplate.is_public == True)  # noqa: E712
    )


def create_template(owner_id: str, **fields: Any) -> SessionTemplate:
    return SessionTemplate.create(id=new_id("tmpl"), owner=owner_id, **fields)


def get_template(template_id: str, owner_id: str) -> SessionTemplate:
    """The caller's template, or anyone's public one; else a 404."""
    found = _visible_templates(owner_id).where(SessionTemplate.id == template_id).first()
    if found is None:
        raise NotFound(f"No session template '{template_id}'.", error="template_not_found")
    return found


def get_own_template(template_id: str, owner_id: str) -> SessionTemplate:
    """For a change: the caller's own template; another user's public one is a 403."""
    template = get_template(template_id, owner_id)
    if template.owner_id != owner_id:
        raise Forbidden(
            "Only the owner of a session template may change or delete it.",
            error="not_template_owner",
        )
    return template


def list_templates(
    owner_id: str,
    *,
    category: str | None,
    is_public: bool | None,
    limit: int,
    offset: int,
    after: str | None = None,
) -> Page:
    query = _visible_templates(owner_id)
    if category is not None:
        query = query.where(SessionTemplate.category == category)
    if is_public is not None:
        query = query.where(SessionTemplate.is_public == is_public)
    keys = (SessionTemplate.created_at, SessionTemplate.id)
    return paginate(query, keys, limit=limit, offset=offset, after=after, descending=True)


def update_template(template: SessionTemplate, fields: dict[str, Any]) -> SessionTemplate:
    for key, value in fields.items():
        setattr(template, key, value)
    template.updated_at = utcnow()
    template.save()
    return template


def delete_template(template: SessionTemplate) -> None:
    template.delete_instance()


def end_turn(session_id: str, run_id: str) -> None:
    """The turn is over: the session is free, and ``completed`` unless another turn holds
    it already or it was archived meanwhile."""
    with database.atomic():
        released = (
            Session.update(current_run_id=None, status="completed", completed_at=utcnow())
            .where(
                (Session.id == session_id)
                & (Session.current_run_id == run_id)
                & (Session.status == "active")
            )
            .execute()
        )
        if not released:
            release_turn(session_id, run_id)


def branch(source: Session, *, upto_sequence: int, **fields: Any) -> Session:
    """A new session with ``source``'s history up to ``upto_sequence`` (its messages and
    the tool calls they answer); ``fields`` set the rest (name, sdk_options, ...). Its
    working directory is, unless given, a sibling of the source's named after its id
    (the caller copies the files)."""
    session_id = new_id("sess")
    sibling = str(PurePath(source.working_directory_path).parent / session_id)
    with database.atomic():
        values = {
            "owner": source.owner_id,
            "name": source.name,
            "agent_id": source.agent_id,
            "sdk_options": source.sdk_options,
            "template_id": source.template_id,
            "parent_session_id": source.id,
            "is_fork": True,
            "mode": "forked",
            "working_directory_path": sibling,
            **fields,
        }
        session = Session.create(id=session_id, **values)
        counts.bump(session.owner_id, "session")
        messages = [m for m in history(source.id) if m.sequence_number <= upto_sequence]
        for message in messages:
            SessionMessage.create(
                id=new_id("msg"),
                session=session.id,
                sequence_number=message.sequence_number,
                message_type=message.message_type,
                content=message.content,
                model=message.model,
                run_id=message.run_id,
                created_at=message.created_at,
            )
        answered = _answered_calls(messages)
        calls = [
            c
            for c in SessionToolCall.select()
            .where(SessionToolCall.session == source.id)
            .order_by(SessionToolCall.created_at)
            if (c.run_id, c.call_id) in answered
        ]
        for call in calls:
            SessionToolCall.create(
                id=new_id("tc"),
                session=session.id,
                run_id=call.run_id,
                call_id=call.call_id,
                tool_name=call.tool_name,
                tool_input=call.tool_input,
                tool_output=call.tool_output,
                status=call.status,
                duration_ms=call.duration_ms,
                created_at=call.created_at,
            )
        Session.update(total_messages=len(messages), total_tool_calls=len(calls)).where(
            Session.id == session.id
        ).execute()
    return Session.get_by_id(session.id)


def _answered_calls(messages: list[SessionMessage]) -> set[tuple[str | None, str | None]]:
    return {(m.run_id, m.content.get("tool_call_id")) for m in messages if m.message_type == "tool"}


def rewind(session_id: str, upto_sequence: int) -> None:
    """Discard the session's messages after ``upto_sequence`` and the tool calls they
    answered; its counters follow (costs stay: they were spent)."""
    with database.atomic():
        later = list(
            SessionMessage.select().where(
                (SessionMessage.session == session_id)
                & (SessionMessage.sequence_number > upto_sequence)
            )
        )
        for run_id, call_id in _answered_calls(later):
            SessionToolCall.delete().where(
                (SessionToolCall.session == session_id)
                & (SessionToolCall.run_id == run_id)
                & (SessionToolCall.call_id == call_id)
            ).execute()
        SessionMessage.delete().where(
            (SessionMessage.session == session_id)
            & (SessionMessage.sequence_number > upto_sequence)
        ).execute()
        messages = SessionMessage.select().where(SessionMessage.session == session_id).count()
        calls = SessionToolCall.select().where(SessionToolCall.session == session_id).count()
        Session.update(
            total_messages=messages, total_tool_calls=calls, last_activity_at=utcnow()
        ).where(Session.id == session_id).execute()
