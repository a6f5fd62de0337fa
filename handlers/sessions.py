"""Sessions: multi-turn conversations with a working directory, their history, forks
and archives."""

from __future__ import annotations

from starlette.responses import FileResponse, StreamingResponse

from cadre import conversations
from cadre.auth import TokenService
from cadre.connexion.binding import Reply
from cadre.db_calls import DatabaseCalls
from cadre.engine import turns
from cadre.engine.events import EventBus
from cadre.engine.executor import Executor
from cadre.replies import page_reply
from cadre.settings import Settings
from models_gen.api import (
    SessionArchive,
    SessionList,
    SessionMessageList,
    SessionToolCallList,
)
from storage import sessions


def list_sessions(
    user: str,
    limit: int,
    offset: int,
    status: str | None = None,
    mode: str | None = None,
    after: str | None = None,
) -> Reply:
    page = sessions.list_sessions(
        user, status=status, mode=mode, limit=limit, offset=offset, after=after
    )
    return page_reply(
        SessionList,
        page,
        map(conversations.session_fields, page.rows),
        path="/api/v1/sessions",
        limit=limit,
        offset=offset,
        status=status,
        mode=mode,
    )


def create_session(user: str, body: dict, settings: Settings) -> Reply:
    session = conversations.create_session(settings, user, body)
    return conversations.session_reply(session), 201


def get_session(user: str, session_id: str) -> Reply:
    return conversations.session_reply(sessions.get_session(session_id, user)), 200


async def delete_session(
    user: str, session_id: str, settings: Settings, executor: Executor, db: DatabaseCalls
) -> tuple[None, int]:
    session = await db(sessions.get_session, session_id, user)
    await conversations.delete_session(settings, executor, session)
    return None, 204


async def query_session(
    user: str,
    token_info: dict,
    session_id: str,
    body: dict,
    executor: Executor,
    bus: EventBus,
    settings: Settings,
    tokens: TokenService,
    db: DatabaseCalls,
    accept: str = "",
) -> Reply | StreamingResponse:
    session = await db(sessions.get_session, session_id, user)
    execution = await turns.start_turn(
        executor,
        session,
        body["message"],
        body.get("inputs"),
        body.get("multitask_strategy", "reject"),
    )
    if "text/event-stream" in accept:
        return conversations.turn_stream(
            bus, settings, session.id, execution.id, tokens=tokens, claims=token_info
        )
    run, events = await conversations.finished_turn(bus, execution.id)
    message_id = await db(conversations.last_assistant_message, run.id)
    return conversations.query_reply(session.id, run, events, message_id), 200


def list_session_messages(
    user: str, session_id: str, limit: int, offset: int, after: str | None = None
) -> Reply:
    session = sessions.get_session(session_id, user)
    page = sessions.list_messages(session.id, limit, offset, after)
    path = f"/api/v1/sessions/{session.id}/messages"
    items = map(conversations.columns, page.rows)
    return page_reply(SessionMessageList, page, items, path=path, limit=limit, offset=offset)


def list_session_tool_calls(
    user: str, session_id: str, limit: int, offset: int, after: str | None = None
) -> Reply:
    session = sessions.get_session(session_id, user)
    page = sessions.list_tool_calls(session.id, limit, offset, after)
    path = f"/api/v1/sessions/{session.id}/tool-calls"
    items = map(conversations.columns, page.rows)
    return page_reply(SessionToolCallList, page, items, path=path, limit=limit, offset=offset)


async def fork_session(
    user: str, session_id: str, body: dict, settings: Settings, db: DatabaseCalls
) -> Reply:
    parent = await db(sessions.get_session, session_id, user)
    child = await conversations.fork_session(settings, db, parent, body)
    return conversations.session_reply(child), 201


async def archive_session(
    user: str,
    session_id: str,
    settings: Settings,
    db: DatabaseCalls,
    body: dict | None = None,
) -> Reply:
    session = await db(sessions.get_session, session_id, user)
    archived = await conversations.archive_session(settings, db, session)
    reply = SessionArchive(
        archive_id=archived.archive_id,
        archive_path=archived.archive_path,
        archive_size_bytes=archived.archive_size_bytes,
        file_count=archived.archive_file_count,
    )
    return reply, 200


async def get_session_archive(user: str, session_id: str, db: DatabaseCalls) -> FileResponse:
    session = await db(sessions.get_session, session_id, user)
    return FileResponse(
        conversations.archive_file(session),
        media_type="application/gzip",
        filename=f"{session.id}.tar.gz",
    )
