"""Executions: start, read, control, and their events (JSON or Server-Sent Events)."""

from __future__ import annotations

from cadre import streams
from cadre.auth import TokenService
from cadre.connexion.binding import Reply
from cadre.engine.events import EventBus
from cadre.engine.executor import Executor
from cadre.engine.launch import launch
from cadre.json_limits import shown
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


async def execute_agent(
    user: str, agent_id: str, body: dict, executor: Executor, idempotency_key: str | None = None
) -> Reply:
    execution = launch(executor, user, agent_id, body, idempotency_key)
    created = ExecutionCreated(
        execution_id=execution.id,
        status=store.get_status(execution.id),
        created_at=execution.created_at,
    )
    return created, 200


async def get_execution(user: str, execution_id: str) -> Reply:
    return _reply(store.get_execution(execution_id, user)), 200


async def get_agent_execution(user: str, execution_id: str) -> Reply:
    """The seed clients' path for the same thing."""
    return await get_execution(user, execution_id)


async def list_executions(
    user: str, limit: int, offset: int, agent_id: str | None = None, status: str | None = None
) -> Reply:
    rows, total = store.list_executions(
        user, agent_ref=agent_id, status=status, limit=limit, offset=offset
    )
    page = ExecutionList(
        executions=[_reply(r) for r in rows], total=total, limit=limit, offset=offset
    )
    return page, 200


async def _control(executor: Executor, user: str, execution_id: str, action: str) -> Reply:
    store.get_execution(execution_id, user)  # 404 unless it is the caller's
    await executor.control(execution_id, action)
    return _reply(store.get_execution(execution_id, user)), 200


async def cancel_execution(user: str, execution_id: str, executor: Executor) -> Reply:
    return await _control(executor, user, execution_id, "cancel")


async def pause_execution(user: str, execution_id: str, executor: Executor) -> Reply:
    return await _control(executor, user, execution_id, "pause")


async def resume_execution(user: str, execution_id: str, executor: Executor) -> Reply:
    return await _control(executor, user, execution_id, "resume")


def _resume_point(after: int, last_event_id: str | None) -> int:
    """Where a stream resumes: ``?after=``, or later when the client says it got further."""
    return after if last_event_id is None else max(after, int(last_event_id))


async def stream_execution_events(
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
    accept: str = "",
    last_event_id: str | None = None,
):
    store.get_execution(execution_id, user)
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
    bus.flush()  # the newest events may still be on their way to the database
    events = [
        shown(row.data, keep=EVENT_ENVELOPE)
        for row in store.events_after(execution_id, after, limit)
    ]
    page = EventList(
        events=events, total=store.count_events(execution_id), after=after, limit=limit
    )
    return page, 200
