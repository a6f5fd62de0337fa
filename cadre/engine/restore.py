"""Restore and fork: new runs that start from a checkpoint.

The new run's step 0 is the checkpoint's state (its conversation and the tool calls
still to run; usage starts at zero, an awaited approval is asked again), so it
continues exactly there. ``modified_query`` replaces the run's task: the conversation
is cut after the messages that came before it and goes on with the new query.

A checkpoint of a session turn belongs to a history, which stays consistent:

- ``restore`` with ``create_new_run`` (the default) and ``fork`` branch a NEW session
  at that point (``parent_session_id``, ``is_fork``, mode ``forked``): the history up
  to the checkpoint and a copy of the working directory; the original is untouched;
- ``restore`` without ``create_new_run`` rewinds the SAME session to that point (its
  later messages and tool calls are deleted) and continues there: 409 while another
  turn holds the session, or once it is archived.

A checkpoint of a run outside any session restores as a new run outside any session;
rewinding one (``create_new_run: false``) is a 409, there is no history to rewind.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cadre.engine.executor import Executor
from cadre.errors import Conflict
from storage import checkpoints, sessions
from storage import executions as store
from storage.checkpoints import Checkpoint
from storage.db import database
from storage.executions import Execution


@dataclass(frozen=True)
class Restored:
    execution: Execution
    checkpoint_id: str


def start_state(
    checkpoint: Checkpoint, modified_query: str | None, system_prompt: str | None
) -> dict[str, Any]:
    """The checkpoint's state as a new run's step 0."""
    state = checkpoint.state
    messages: list[dict[str, Any]] = list(state.get("messages") or [])
    pending = list(state.get("pending") or [])
    if modified_query is not None:
        users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
        cut = users[-1] if users else len(messages)
        messages = [*messages[:cut], {"role": "user", "content": modified_query}]
        pending = []
    if system_prompt is not None:
        system = {"role": "system", "content": system_prompt}
        if messages and messages[0].get("role") == "system":
            messages[0] = system
        else:
            messages.insert(0, system)
    tally = {"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0, "steps": 0}
    return {
        "messages": messages,
        "pending": pending,
        "tally": {**tally, "tool_calls": 0},
        "awaiting": None,
    }


def _history_point(checkpoint: Checkpoint, modified_query: str | None) -> int:
    """The last session message kept: the checkpoint's, or just before the run's task."""
    if modified_query is None:
        return int(checkpoint.state.get("session_seq") or 0)
    rows = sessions.history(checkpoint.session_id)
    asked = [
        r.sequence_number
        for r in rows
        if r.run_id == checkpoint.execution_id and r.message_type == "user"
    ]
    return (asked[0] - 1) if asked else int(checkpoint.state.get("session_seq") or 0)


def _new_run(
    source: Execution,
    checkpoint: Checkpoint,
    *,
    task: str,
    config: dict[str, Any],
    session_id: str | None,
) -> Execution:
    return store.create_execution(
        owner=source.owner_id,
        agent_id=source.agent_id,
        agent_name=source.agent_name,
        task=task,
        mode=source.mode,
        inputs=source.inputs,
        config=config,
        provider=source.provider,
        model=source.model,
        cost_limit=source.cost_limit,
        timeout=source.timeout,
        session_id=session_id,
        restored_from=checkpoint.id,
    )


def _user_message(execution: Execution, text: str) -> dict[str, Any]:
    return {"message_type": "user", "content": {"content": text}, "run_id": execution.id}


async def _branch(
    executor: Executor, checkpoint: Checkpoint, upto: int, sdk_options: dict[str, Any] | None
) -> sessions.Session:
    """A new session with the history up to ``upto`` and a copy of the working directory."""
    db = executor.db
    source = await db(sessions.get_session, checkpoint.session_id, None)
    fields = {} if sdk_options is None else {"sdk_options": sdk_options}
    branched = await db(sessions.branch, source, upto_sequence=upto, **fields)
    origin = Path(source.working_directory_path)
    if origin.is_dir():
        await asyncio.to_thread(
            shutil.copytree,
            origin,
            branched.working_directory_path,
            symlinks=True,
            dirs_exist_ok=True,
        )
    else:
        Path(branched.working_directory_path).mkdir(parents=True, exist_ok=True)
    return branched


def _source(checkpoint_id: str, owner_id: str) -> tuple[Checkpoint, Execution]:
    checkpoint = checkpoints.get_checkpoint(checkpoint_id, owner_id)
    return checkpoint, store.Execution.get_by_id(checkpoint.execution_id)


async def restart(
    executor: Executor,
    owner_id: str,
    checkpoint_id: str,
    *,
    create_new_run: bool = True,
    modified_query: str | None = None,
    system_prompt: str | None = None,
) -> Execution:
    """Start a run from a checkpoint (``restore``; with ``system_prompt``, ``fork``).

    Its storage work goes through ``executor.db`` (off the event loop on PostgreSQL),
    each transaction whole."""
    db = executor.db
    checkpoint, source = await db(_source, checkpoint_id, owner_id)
    state = start_state(checkpoint, modified_query, system_prompt)
    task = source.task if modified_query is None else modified_query
    config = dict(source.config)
    if system_prompt is not None:
        config["instructions"] = system_prompt
    if checkpoint.session_id is None:
        if not create_new_run:
            raise Conflict(
                "This checkpoint's run is not a session turn: there is no history to rewind;"
                " restore it as a new run.",
                error="not_a_session_run",
            )
        execution = await db(_restart_alone, source, checkpoint, task, config, state)
    elif create_new_run:
        upto = await db(_history_point, checkpoint, modified_query)
        sdk_options = None
        if system_prompt is not None:
            origin = await db(sessions.get_session, checkpoint.session_id, None)
            sdk_options = {**origin.sdk_options, "system_prompt": system_prompt}
        branched = await _branch(executor, checkpoint, upto, sdk_options)
        execution = await db(
            _restart_branched, source, checkpoint, task, config, state, branched, modified_query
        )
    else:
        session_id = checkpoint.session_id
        if (await db(sessions.get_session, session_id, None)).status == "archived":
            raise Conflict(
                "This session is archived: restore the checkpoint as a new run instead.",
                error="session_archived",
            )
        upto = await db(_history_point, checkpoint, modified_query)
        execution = await db(
            _restart_rewound, source, checkpoint, task, config, state, upto, modified_query
        )
    executor.submit(execution)
    return execution


def _restart_alone(
    source: Execution,
    checkpoint: Checkpoint,
    task: str,
    config: dict[str, Any],
    state: dict[str, Any],
) -> Execution:
    with database.atomic():
        execution = _new_run(source, checkpoint, task=task, config=config, session_id=None)
        checkpoints.save(execution.id, None, 0, state)
    return execution


def _restart_branched(
    source: Execution,
    checkpoint: Checkpoint,
    task: str,
    config: dict[str, Any],
    state: dict[str, Any],
    branched: sessions.Session,
    modified_query: str | None,
) -> Execution:
    with database.atomic():
        execution = _new_run(source, checkpoint, task=task, config=config, session_id=branched.id)
        if modified_query is not None:
            sessions.append_messages(branched.id, [_user_message(execution, modified_query)])
        state["session_seq"] = sessions.last_sequence(branched.id)
        checkpoints.save(execution.id, branched.id, 0, state)
    return execution


def _restart_rewound(
    source: Execution,
    checkpoint: Checkpoint,
    task: str,
    config: dict[str, Any],
    state: dict[str, Any],
    upto: int,
    modified_query: str | None,
) -> Execution:
    session_id = checkpoint.session_id
    assert session_id is not None
    with database.atomic():
        execution = _new_run(source, checkpoint, task=task, config=config, session_id=session_id)
        if not sessions.claim_turn(session_id, execution.id):
            raise Conflict(
                "A turn is running in this session; rewind it once that turn is over.",
                error="session_busy",
            )
        sessions.rewind(session_id, upto)
        if modified_query is not None:
            sessions.append_messages(session_id, [_user_message(execution, modified_query)])
        state["session_seq"] = sessions.last_sequence(session_id)
        checkpoints.save(execution.id, session_id, 0, state)
    return execution
