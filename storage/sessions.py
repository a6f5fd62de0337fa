"""Sessions (multi-turn conversations with a working directory), their messages and
tool calls, and session templates.

A session's turns are executions with ``session_id`` set. At most one turn holds a
session at a time: ``claim_turn`` is a conditional UPDATE, so of many concurrent
claims exactly one wins, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from typing import Any

import peewee

from cadre.errors import NotFound
from storage.db import BaseModel, database
from storage.fields import JSONField, UTCDateTimeField
from storage.ids import new_id, utcnow
from storage.queries import owned
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
    return Session.create(id=new_id("sess"), **fields)


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


def claim_turn(session_id: str, run_id: str) -> bool:
    """Let ``run_id`` hold the session if no other turn does; True when it now holds it."""
    updated = (
        Session.update(current_run_id=run_id)
        .where(
            (Session.id == session_id)
            & (Session.current_run_id.is_null() | (Session.current_run_id == run_id))
        )
        .execute()
    )
    return updated == 1


def release_turn(session_id: str, run_id: str) -> None:
    Session.update(current_run_id=None).where(
        (Session.id == session_id) & (Session.current_run_id == run_id)
    ).execute()
