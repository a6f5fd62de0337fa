"""Creating an execution: the agent's effective settings frozen, idempotency honoured."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cadre.db_calls import DatabaseCalls
from cadre.engine.executor import Executor
from cadre.engine.run import opening_state
from cadre.errors import Conflict
from cadre.json_limits import check_size
from storage import agents
from storage import executions as store
from storage.executions import Execution


def request_hash(agent_id: str, body: dict[str, Any]) -> str:
    canonical = json.dumps({"agent": agent_id, "body": body}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def launch(
    executor: Executor,
    owner_id: str,
    agent_ref: str,
    body: dict[str, Any],
    idempotency_key: str | None,
) -> Execution:
    """Queue a new execution, or return the one an earlier identical request created.

    ``body`` was validated against ``ExecuteRequest``, its nesting depth bounded.
    """
    execution, new = create(executor, owner_id, agent_ref, body, idempotency_key)
    if new:
        executor.submit(execution, new=True, opened=execution.status == "running")
    return execution


async def launch_async(
    executor: Executor,
    owner_id: str,
    agent_ref: str,
    body: dict[str, Any],
    idempotency_key: str | None,
    *,
    db: DatabaseCalls,
) -> Execution:
    """``launch`` with its database half sent through ``db`` (off the loop on PostgreSQL)."""
    execution, new = await db(create, executor, owner_id, agent_ref, body, idempotency_key)
    if new:  # on the event loop: it starts the run's task
        executor.submit(execution, new=True, opened=execution.status == "running")
    return execution


def create(
    executor: Executor,
    owner_id: str,
    agent_ref: str,
    body: dict[str, Any],
    idempotency_key: str | None,
) -> tuple[Execution, bool]:
    """The database half of ``launch``: the execution, and whether it is new (to submit).
    A new run that can start at once is stored running with its step 0, in the slot it
    takes (``Executor.slot_at_launch``)."""
    check_size(body.get("inputs") or {}, executor.config.max_inputs_bytes, "body.inputs")
    agent = agents.get_agent(agent_ref, owner_id)
    digest = None  # what a retry with the same Idempotency-Key must match
    if idempotency_key is not None:
        digest = request_hash(agent.id, body)
        existing = store.find_idempotent(owner_id, idempotency_key)
        if existing is not None:
            if existing.request_hash != digest:
                raise Conflict(
                    "This Idempotency-Key was used with a different request.",
                    error="idempotency_key_reused",
                    details={"Idempotency-Key": idempotency_key},
                )
            return existing, False
    if agent.status != "active":
        raise Conflict(f"Agent '{agent.name}' is disabled.", error="agent_disabled")
    resolved = agents.resolve([agent])[0]
    fields = {
        "owner": owner_id,
        "agent_id": agent.id,
        "agent_name": agent.name,
        "task": body["task"],
        "mode": body.get("mode", "safe"),
        "inputs": body.get("inputs") or {},
        "config": resolved.values,
        "provider": resolved.values["provider"],
        "model": resolved.values["model"],
        "cost_limit": body.get("cost_limit"),
        "timeout": body.get("timeout"),
        "idempotency_key": idempotency_key,
        "request_hash": digest,
    }
    if not executor.slot_at_launch(owner_id, resolved.values["provider"]):
        return store.create_execution(**fields), True
    try:  # it starts now: stored running, with its step 0
        opening = opening_state(resolved.values, body["task"])
        return store.create_execution(opening=opening, **fields), True
    except BaseException:
        executor.release_launch_slot(owner_id)
        raise
