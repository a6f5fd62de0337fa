"""Chat (seed 004): one message to an agent, in a new session or an existing one."""

from __future__ import annotations

from starlette.responses import StreamingResponse

from cadre import conversations
from cadre.auth import TokenService
from cadre.connexion.binding import Reply
from cadre.db_calls import DatabaseCalls
from cadre.engine import turns
from cadre.engine.events import EventBus
from cadre.engine.executor import Executor
from cadre.errors import CadreError
from cadre.settings import Settings
from storage import sessions

NAME_CHARS = 64  # a new session is named after the start of its first message


async def chat(
    user: str,
    token_info: dict,
    body: dict,
    executor: Executor,
    bus: EventBus,
    settings: Settings,
    tokens: TokenService,
    db: DatabaseCalls,
) -> Reply | StreamingResponse:
    new = body.get("session_id") is None
    if new:
        name = " ".join(body["message"].split())[:NAME_CHARS] or "chat"
        session = await db(
            conversations.create_session,
            settings,
            user,
            {"name": name, "agent_id": body["agent_id"]},
        )
    else:
        session = await db(sessions.get_session, body["session_id"], user)
        await db(conversations.check_agent, session, user, body["agent_id"])
    try:
        execution = await turns.start_turn(
            executor,
            session,
            body["message"],
            body.get("inputs"),
            body.get("multitask_strategy", "reject"),
        )
    except CadreError:
        if new:  # a chat that could not start leaves no empty session behind
            await conversations.delete_session(settings, executor, session)
        raise
    if body.get("stream", False):
        return conversations.turn_stream(
            bus, settings, session.id, execution.id, tokens=tokens, claims=token_info
        )
    run, _ = await conversations.finished_turn(bus, execution.id)
    return conversations.chat_reply(session.id, run), 200
