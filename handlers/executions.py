"""Executions: start, read, control, and their events (JSON or Server-Sent Events)."""

from __future__ import annotations

from typing import Any

from cadre import streams
from cadre.auth import TokenService
from cadre.connexion.binding import Reply
from cadre.db_calls import DatabaseCalls
from cadre.engine.events import EventBus
from cadre.engine.executor import Executor
from cadre.engine.launch import launch_async
from cadre.json_limits import shown
from cadre.replies import page_reply
from cadre.settings import Settings
from models_gen.api import EventList, ExecutionCreated, ExecutionList
from models_gen.api import Execution as ExecutionReply
from storage import executions as store

EVENT_ENVELOPE = ("execution_id", "seq", "type", "timestamp")


def _reply(execution: store.Execution) -> ExecutionReply:
    reply = ExecutionReply.model_validate(execution, from_attributes=True)
    # Free-form values stored before depth limits existed may be too deep to serialise.
    return reply.model_copy(
        update={"inputs": shown(execution.inputs), "result": shown(execution.result)}
    )


def _fields(execution: store.Execution) -> dict[str, Any]:
    """``_reply``'s values for a list, which writes them without a model."""
    return {
        **execution.__data__,
        "usage": execution.usage,
        "inputs": shown(execution.inputs),
        "result": shown(execution.result),
    }


async def execute_agent(
    user: str,
    agent_id: str,
    body: dict,
    executor: Executor,
    db: DatabaseCalls,
    idempotency_key: str | None = None,
) -> Reply:
    execution = await launch_async(executor, user, agent_id, body, idempotency_key, db=db)
    created = ExecutionCreated(
        execution_id=execution.id,
        status=await db(store.get_status, execution.id),
        created_at=execution.created_at,
    )
    return created, 200


def get_execution(user: str, execution_id: str) -> Reply:
    return _reply(store.get_execution(execution_id, user)), 200


def get_agent_execution(user: str, execution_id: str) -> Reply:
    """The seed clients' path for the same thing."""
    return get_execution(user, execution_id)


def list_executions(
    user: str,
    limit: int,
    offset: int,
    agent_id: str | None = None,
    status: str | None = None,
    after: str | None = None,
) -> Reply:
    page = store.list_executions(
        user, agent_ref=agent_id, status=status, limit=limit, offset=offset, after=after
    )
    return page_reply(
        ExecutionList,
        page,
        map(_fields, page.rows),
        path="/api/v1/executions",
        limit=limit,
        offset=offset,
        agent_id=agent_id,
        status=status,
    )


async def _control(
    executor: Executor, db: DatabaseCalls, user: str, execution_id: str, action: str
) -> Reply:
    await db(store.get_execution, execution_id, user)  # 404 unless it is the caller's
    await executor.control(execution_id, action)
    return _reply(await db(store.get_execution, execution_id, user)), 200


async def cancel_execution(
    user: str, execution_id: str, executor: Executor, db: DatabaseCalls
) -> Reply:
    return await _control(executor, db, user, execution_id, "cancel")


async def pause_execution(
    user: str, execution_id: str, executor: Executor, db: DatabaseCalls
) -> Reply:
    return await _control(executor, db, user, execution_id, "pause")


async def resume_execution(
    user: str, execution_id: str, executor: Executor, db: DatabaseCalls
) -> Reply:
    return await _control(executor, db, user, execution_id, "resume")


def _resume_point(after: int, last_event_id: str | None) -> int:
    """Where a stream resumes: ``?after=``, or later when the client says it got further."""
    return after if last_event_id is None else max(after, int(last_event_id))


def stream_execution_events(
    user: str,
    token_info: dict,
    execution_id: str,
    after: int,
    bus: EventBus,
    settings: Settings,
    tokens: TokenService,
    last_event_id: str | None = None,
):
    store.get_execution(execution_id, user)
    after = _resume_point(after, last_event_id)
    return streams.sse_response(
        bus,
        execution_id,
        after,
        settings.stream_keepalive_seconds,
        tokens=tokens,
        claims=token_info,
    )


async def list_execution_events(
    user: str,
    token_info: dict,
    execution_id: str,
    after: int,
    limit: int,
    bus: EventBus,
    settings: Settings,
    tokens: TokenService,
    db: DatabaseCalls,
    accept: str = "",
    last_event_id: str | None = None,
):
    await db(store.get_execution, execution_id, user)
    after = _resume_point(after, last_event_id)
    if "text/event-stream" in accept:  # as before /events/stream existed
        return streams.sse_response(
            bus,
            execution_id,
            after,
            settings.stream_keepalive_seconds,
            tokens=tokens,
            claims=token_info,
        )
    await bus.drain()  # the newest events may still be on their way to the database
    rows = await db(store.events_after, execution_id, after, limit)
    events = [shown(row.data, keep=EVENT_ENVELOPE) for row in rows]
    total = await db(store.count_events, execution_id)
    page = EventList(events=events, total=total, after=after, limit=limit)
    return page, 200
