"""Runs: seed 004's names for the execution operations, and tool approvals."""

from __future__ import annotations

from cadre.connexion.binding import Reply
from cadre.db_calls import DatabaseCalls
from cadre.engine.executor import Executor
from handlers import executions
from storage import executions as store


def get_run(user: str, run_id: str) -> Reply:
    return executions.get_execution(user, run_id)


async def pause_run(user: str, run_id: str, executor: Executor, db: DatabaseCalls) -> Reply:
    return await executions.pause_execution(user, run_id, executor, db)


async def resume_run(user: str, run_id: str, executor: Executor, db: DatabaseCalls) -> Reply:
    return await executions.resume_execution(user, run_id, executor, db)


async def cancel_run(user: str, run_id: str, executor: Executor, db: DatabaseCalls) -> Reply:
    return await executions.cancel_execution(user, run_id, executor, db)


async def approve_run(
    user: str, run_id: str, body: dict, executor: Executor, db: DatabaseCalls
) -> Reply:
    await db(store.get_execution, run_id, user)  # 404 unless it is the caller's
    await executor.approve(run_id, body["tool_call_id"], body["decision"], body.get("reason"))
    return await db(executions.get_execution, user, run_id)
