"""Sessions as the API sees them: creating one (template, agent, working directory),
forking, archiving and deleting it, and the replies a finished turn gives."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import anyio.to_thread
import peewee
from starlette.responses import StreamingResponse

from cadre import streams
from cadre.auth import TokenService
from cadre.db_calls import DatabaseCalls
from cadre.engine import session_files
from cadre.engine.events import Event, EventBus
from cadre.engine.executor import Executor
from cadre.engine.tools.workspace import quota_refusal, workspace_size
from cadre.engine.turns import DEFAULT_AGENT, cancel_all, canonical_options, wait_turn
from cadre.errors import Conflict, NotFound, ValidationFailed
from cadre.settings import Settings
from models_gen.api import ChatReply, SessionQueryReply, TurnMetrics
from models_gen.api import Session as SessionReply
from models_gen.api import SessionMessage as MessageReply
from models_gen.api import SessionToolCall as ToolCallReply
from storage import agents, sessions
from storage.executions import Execution
from storage.ids import new_id


def columns(row: peewee.Model) -> dict[str, Any]:
    """Every column of ``row`` (a new row's unset ones as None), foreign keys as ids."""
    return {name: row.__data__.get(name) for name in type(row)._meta.fields}


def session_fields(session: sessions.Session) -> dict[str, Any]:
    """The session's reply values (a list writes them without a model)."""
    options = {"model": None, "system_prompt": None, **session.sdk_options}
    return {**columns(session), "user_id": session.owner_id, "sdk_options": options}


def session_reply(session: sessions.Session) -> SessionReply:
    return SessionReply.model_validate(session_fields(session))


def message_reply(message: sessions.SessionMessage) -> MessageReply:
    return MessageReply.model_validate(columns(message))


def tool_call_reply(call: sessions.SessionToolCall) -> ToolCallReply:
    return ToolCallReply.model_validate(columns(call))


def resolve_agent(owner_id: str, ref: str) -> agents.Agent | None:
    """The caller's agent ``ref``; ``echo`` without such an agent is the default (None)."""
    try:
        return agents.get_agent(ref, owner_id)
    except NotFound:
        if ref == DEFAULT_AGENT:
            return None
        raise


def create_session(settings: Settings, owner_id: str, body: dict[str, Any]) -> sessions.Session:
    if sessions.count_sessions(owner_id) >= settings.max_sessions_per_user:
        raise Conflict(
            f"You have {settings.max_sessions_per_user} sessions, the most one user may "
            "keep (CADRE_MAX_SESSIONS_PER_USER): delete some first.",
            error="session_limit_reached",
        )
    template = None
    if body.get("template_id") is not None:
        template = sessions.get_template(body["template_id"], owner_id)
    options = {**(template.sdk_options if template else {}), **(body.get("sdk_options") or {})}
    options = canonical_options(options, "body.sdk_options")
    agent = None
    if body.get("agent_id") is not None:
        agent = resolve_agent(owner_id, body["agent_id"])
    if "allowed_tools" not in options:  # neither the request nor the template names them
        options["allowed_tools"] = agents.resolve([agent])[0].values["tools"] if agent else []
    options.setdefault("permission_mode", "default")
    session_id = new_id("sess")
    path = session_files.create_working_directory(settings.data_dir, session_id)
    try:
        return sessions.create_session(
            id=session_id,
            owner=owner_id,
            name=body["name"],
            agent_id=agent.id if agent else None,
            mode=body.get("mode") or (template.default_mode if template else "interactive"),
            sdk_options=options,
            template_id=template.id if template else None,
            working_directory_path=str(path),
        )
    except BaseException:
        session_files.remove(path)
        raise


async def fork_session(
    settings: Settings, db: DatabaseCalls, parent: sessions.Session, body: dict[str, Any]
) -> sessions.Session:
    if await db(sessions.count_sessions, parent.owner_id) >= settings.max_sessions_per_user:
        raise Conflict(
            f"You have {settings.max_sessions_per_user} sessions, the most one user may keep.",
            error="session_limit_reached",
        )
    at_sequence = body.get("at_sequence")
    last = await db(sessions.last_sequence, parent.id)
    if at_sequence is not None and at_sequence > last:
        raise ValidationFailed(
            f"The session has no message {at_sequence}.",
            details={"body.at_sequence": f"no message with sequence_number {at_sequence}"},
        )
    quota = settings.workspace_quota_bytes
    source = Path(parent.working_directory_path)
    if quota is not None:
        used = await anyio.to_thread.run_sync(workspace_size, source, quota)
        if used > quota:
            raise quota_refusal(quota, "The session's working directory is over its quota.")
    upto = last if at_sequence is None else at_sequence
    child = await db(sessions.branch, parent, upto_sequence=upto, name=body["name"])
    try:
        await anyio.to_thread.run_sync(
            session_files.copy_working_directory,
            source,
            Path(child.working_directory_path),
            None,
        )
    except BaseException:
        await db(sessions.delete_session, child.id)
        session_files.remove(Path(child.working_directory_path))
        raise
    return child


def _archive_document(session: sessions.Session) -> dict[str, Any]:
    return {
        "session": session_reply(session).model_dump(mode="json"),
        "messages": [
            message_reply(m).model_dump(mode="json") for m in sessions.history(session.id)
        ],
        "tool_calls": [
            tool_call_reply(c).model_dump(mode="json")
            for c in sessions.SessionToolCall.select()
            .where(sessions.SessionToolCall.session == session.id)
            .order_by(sessions.SessionToolCall.created_at, sessions.SessionToolCall.id)
        ],
    }


async def archive_session(
    settings: Settings, db: DatabaseCalls, session: sessions.Session
) -> sessions.Session:
    if session.current_run_id is not None or await db(sessions.unfinished_turns, session.id):
        raise Conflict(
            "A turn of this session is running or waiting: archive it once they are over.",
            error="session_busy",
        )
    archive_id = new_id("arch")
    target = session_files.archive_directory(settings.data_dir, session.id) / f"{archive_id}.tar.gz"
    size, count = await anyio.to_thread.run_sync(
        session_files.write_archive,
        Path(session.working_directory_path),
        target,
        await db(_archive_document, session),
    )
    previous = session.archive_path
    await db(
        sessions.update_session,
        session.id,
        status="archived",
        archive_id=archive_id,
        archive_path=str(target),
        archive_size_bytes=size,
        archive_file_count=count,
    )
    if previous and previous != str(target):
        with contextlib.suppress(OSError):
            Path(previous).unlink()
    return await db(sessions.Session.get_by_id, session.id)


def archive_file(session: sessions.Session) -> Path:
    if session.archive_path is None or not Path(session.archive_path).is_file():
        raise Conflict(
            "This session has not been archived: POST its /archive first.",
            error="session_not_archived",
        )
    return Path(session.archive_path)


async def delete_session(settings: Settings, executor: Executor, session: sessions.Session) -> None:
    await cancel_all(executor, session.id)
    await executor.db(sessions.delete_session, session.id)
    await anyio.to_thread.run_sync(
        session_files.remove,
        Path(session.working_directory_path),
        session_files.archive_directory(settings.data_dir, session.id),
    )


# -- what a turn answers ----------------------------------------------------------------


def turn_stream(
    bus: EventBus,
    settings: Settings,
    session_id: str,
    run_id: str,
    *,
    tokens: TokenService,
    claims: dict[str, Any],
) -> StreamingResponse:
    """The turn as chat events (Server-Sent Events), from its first event; it ends, as every
    stream does, once the token (``claims``) stops being good (``streams.token_problem``)."""
    translate = streams.chat_translator(session_id)
    keepalive = settings.stream_keepalive_seconds
    return streams.sse_response(
        bus, run_id, 0, keepalive, tokens=tokens, claims=claims, translate=translate
    )


async def finished_turn(bus: EventBus, run_id: str) -> tuple[Execution, list[Event]]:
    """The turn's execution and events once it is over (or waits for an approval)."""
    events = await wait_turn(bus, run_id)
    return await bus.db(Execution.get_by_id, run_id), events


def query_reply(
    session_id: str, run: Execution, events: list[Event], message_id: str | None
) -> SessionQueryReply:
    """``message_id``: the turn's last assistant message (``last_assistant_message``)."""
    return SessionQueryReply(
        session_id=session_id,
        message_id=message_id,
        run_id=run.id,
        status=run.status,
        content={"type": "text", "text": turn_text(run)},
        tool_calls=turn_tool_calls(events),
        metrics=metrics(run),
        error=run.error,
    )


def chat_reply(session_id: str, run: Execution) -> ChatReply:
    return ChatReply(
        run_id=run.id,
        session_id=session_id,
        response=turn_text(run),
        status=run.status,
        error=run.error,
        metrics=metrics(run),
    )


def metrics(execution: Execution) -> TurnMetrics:
    duration = execution.latency_ms
    if duration is None and execution.started_at and execution.completed_at:
        duration = round((execution.completed_at - execution.started_at).total_seconds() * 1000)
    return TurnMetrics(
        duration_ms=duration,
        input_tokens=execution.prompt_tokens,
        output_tokens=execution.completion_tokens,
        cost_usd=execution.cost_usd,
    )


def turn_tool_calls(events: list[Event]) -> list[dict[str, Any]]:
    """The turn's tool calls, from its events, with how each ended."""
    calls: dict[str, dict[str, Any]] = {}
    for event in events:
        if event["type"] in ("tool_call", "approval_required"):
            calls[event["call_id"]] = {
                "call_id": event["call_id"],
                "tool_name": event["tool"],
                "tool_input": event.get("args") or {},
                "status": "pending",
            }
        elif event["type"] == "tool_result" and event.get("call_id") in calls:
            denied = event.get("code") in ("tool_denied", "tool_refused")
            failed = "error" in event
            status = "denied" if denied else "error" if failed else "success"
            calls[event["call_id"]]["status"] = status
    return list(calls.values())


def turn_text(execution: Execution) -> str:
    return str((execution.result or {}).get("output") or "")


def last_assistant_message(run_id: str) -> str | None:
    replies = [m for m in sessions.run_messages(run_id) if m.message_type == "assistant"]
    return replies[-1].id if replies else None


def check_agent(session: sessions.Session, owner_id: str, agent_ref: str) -> None:
    """Chat on an existing session: ``agent_ref`` must name the session's agent."""
    try:
        agent = resolve_agent(owner_id, agent_ref)
        matches = (agent.id if agent else None) == session.agent_id
    except NotFound:
        matches = False
    if not matches:
        raise Conflict(
            f"Session '{session.id}' talks to another agent than '{agent_ref}'.",
            error="session_agent_mismatch",
            details={"body.agent_id": "not the session's agent"},
        )
