"""A session's turn: one execution, with the session's settings frozen into its config.

The turn runs the session's agent (or the default echo agent when the session has
none: no agent row, the execution's agent is ``echo``) with the session's
``sdk_options`` laid over it: ``allowed_tools`` replace the agent's tools,
``system_prompt`` its instructions, ``model`` its model, and ``permission_mode`` is
added for the engine to ask, run or refuse each tool call. The execution mode is
``full`` (tools on the session's working directory), or ``safe`` under
``permission_mode: plan``, so read-only tools alone run.

Concurrency per session (``multitask_strategy``):

- ``reject``: the new turn claims the session in the transaction that creates it;
  while another turn holds it that is a 409 ``session_busy`` and no execution is left.
- ``enqueue``: created without claiming; the engine starts it after the turns before it.
- ``interrupt``: the running turn is cancelled (what it produced is kept), then the
  new one takes its claim over.
- ``rollback``: as ``interrupt``, and the cancelled turn's messages and tool calls are
  deleted before the new one starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from cadre.engine.events import Event, EventBus
from cadre.engine.executor import Executor
from cadre.engine.tools.permissions import canonical_tool
from cadre.errors import CadreError, Conflict, ValidationFailed
from cadre.json_limits import check_size
from storage import agents, sessions
from storage import executions as store
from storage.executions import TERMINAL, Execution

log = logging.getLogger("cadre.engine")

DEFAULT_AGENT = "echo"  # the agent id and name of turns of a session without an agent
STOP_WAIT_SECONDS = 10.0


def canonical_options(options: dict[str, Any], field: str) -> dict[str, Any]:
    """``sdk_options`` with each allowed tool under Cadre's name; 422 naming an unknown one."""
    if "allowed_tools" not in options:
        return dict(options)
    tools = []
    for name in options["allowed_tools"]:
        try:
            canonical = canonical_tool(name)
        except ValidationFailed as exc:
            raise ValidationFailed(
                f"Unknown tool '{name}' in {field}.allowed_tools.",
                details={f"{field}.allowed_tools": f"'{name}' is not a known tool"},
            ) from exc
        if canonical not in tools:
            tools.append(canonical)
    return {**options, "allowed_tools": tools}


def _agent_values(session: sessions.Session) -> tuple[str, str, dict[str, Any]]:
    if session.agent_id is None:
        return DEFAULT_AGENT, DEFAULT_AGENT, dict(agents.DEFAULTS)
    agent = agents.Agent.get_or_none(agents.Agent.id == session.agent_id)
    if agent is None:
        raise Conflict("The agent of this session was deleted.", error="session_agent_deleted")
    if agent.status != "active":
        raise Conflict(f"Agent '{agent.name}' is disabled.", error="agent_disabled")
    return agent.id, agent.name, agents.resolve([agent])[0].values


def turn_fields(session: sessions.Session, message: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """The execution columns of a new turn: the session's effective settings, frozen."""
    agent_id, agent_name, values = _agent_values(session)
    options = session.sdk_options
    config = {
        **values,
        "tools": list(options.get("allowed_tools", [])),
        "permission_mode": options.get("permission_mode", "default"),
    }
    if options.get("system_prompt") is not None:
        config["instructions"] = options["system_prompt"]
    if options.get("model"):
        config["model"] = options["model"]
    return {
        "owner": session.owner_id,
        "agent_id": agent_id,
        "agent_name": agent_name,
        "task": message,
        "mode": "safe" if config["permission_mode"] == "plan" else "full",
        "inputs": inputs,
        "config": config,
        "provider": config["provider"],
        "model": config["model"],
    }


async def start_turn(
    executor: Executor,
    session: sessions.Session,
    message: str,
    inputs: dict[str, Any] | None,
    strategy: str = "reject",
) -> Execution:
    """Create and submit the session's next turn under ``strategy`` (see the module)."""
    if session.status == "archived":
        raise Conflict(
            "This session is archived: fork it to continue the conversation.",
            error="session_archived",
        )
    inputs = inputs or {}
    check_size(inputs, executor.config.max_inputs_bytes, "body.inputs")
    db = executor.db
    fields = await db(turn_fields, session, message, inputs)
    if strategy == "enqueue":
        execution = await db(sessions.create_turn, session.id, claim=False, **fields)
    elif strategy in ("interrupt", "rollback"):
        execution = await _replace_current(executor, session.id, strategy, fields)
    else:
        execution = await db(sessions.create_turn, session.id, claim=True, **fields)
    executor.submit(execution, new=True)
    return execution


async def _replace_current(
    executor: Executor, session_id: str, strategy: str, fields: dict[str, Any]
) -> Execution:
    db = executor.db
    current = (await db(sessions.Session.get_by_id, session_id)).current_run_id
    if current is None:
        return await db(sessions.create_turn, session_id, claim=True, **fields)
    await stop_turn(executor, current)
    if strategy == "rollback":
        await db(sessions.discard_run, session_id, current)
    return await db(sessions.create_turn, session_id, claim=True, take_over=current, **fields)


async def stop_turn(executor: Executor, run_id: str) -> None:
    """Cancel a turn and wait until it is over (what it produced so far is kept)."""
    with contextlib.suppress(Conflict):  # it ended meanwhile
        await executor.control(run_id, "cancel")
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    while (
        await executor.db(store.get_status, run_id) not in TERMINAL and time.monotonic() < deadline
    ):
        await asyncio.sleep(0.05)


async def events_until_done(bus: EventBus, run_id: str, after: int = 0) -> AsyncIterator[Event]:
    """The turn's events after ``after`` up to and including ``complete``."""
    async for event in bus.subscribe(run_id, after):
        if event is not None:
            yield event


async def wait_turn(bus: EventBus, run_id: str) -> list[Event]:
    """The turn's events once it is over, or once it stops to wait for a tool approval
    (its status then ``requires_action``: ``POST /api/v1/runs/{run_id}/approve`` goes on)."""
    events = []
    async for event in events_until_done(bus, run_id):
        events.append(event)
        if event["type"] == "status" and event.get("status") == "requires_action":
            break
    return events


async def cancel_all(executor: Executor, session_id: str) -> None:
    """Stop every unfinished turn of the session (before it is deleted)."""
    for execution in await executor.db(sessions.unfinished_turns, session_id):
        try:
            await stop_turn(executor, execution.id)
        except CadreError:
            log.warning("could not cancel turn %s of session %s", execution.id, session_id)
