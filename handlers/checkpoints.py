"""Checkpoints: a run's steps, and new runs restored or forked from one."""

from __future__ import annotations

from cadre.connexion.binding import Reply
from cadre.db_calls import DatabaseCalls
from cadre.engine.executor import Executor
from cadre.engine.restore import restart
from cadre.pagination import next_link
from models_gen.api import Checkpoint as CheckpointReply
from models_gen.api import CheckpointList, RestoredRun
from storage import checkpoints
from storage import executions as store


def _reply(checkpoint: checkpoints.Checkpoint) -> dict:
    """The checkpoint as the spec has it; members a state leaves out stay out (not null)."""
    reply = CheckpointReply.model_validate(
        {
            "id": checkpoint.id,
            "run_id": checkpoint.execution_id,
            "session_id": checkpoint.session_id,
            "step": checkpoint.step,
            "created_at": checkpoint.created_at,
            "state": checkpoint.state,
        }
    )
    return reply.model_dump(mode="json", exclude_unset=True)


def _started(execution: store.Execution) -> RestoredRun:
    return RestoredRun(
        run_id=execution.id,
        session_id=execution.session_id,
        checkpoint_id=execution.restored_from,
        status=store.get_status(execution.id),
    )


def list_run_checkpoints(
    user: str, run_id: str, limit: int, offset: int, after: str | None = None
) -> Reply:
    store.get_execution(run_id, user)
    page = checkpoints.list_checkpoints(run_id, limit, offset, after)
    reply = CheckpointList.model_validate(
        {
            "checkpoints": [_reply(r) for r in page.rows],
            "total": page.total,
            "limit": limit,
            "offset": offset,
            "next": next_link(f"/api/v1/checkpoints/runs/{run_id}/checkpoints", page, limit),
        }
    )
    return reply.model_dump(mode="json", exclude_unset=True), 200


def get_checkpoint(user: str, checkpoint_id: str) -> Reply:
    return _reply(checkpoints.get_checkpoint(checkpoint_id, user)), 200


async def restore_checkpoint(
    user: str, checkpoint_id: str, body: dict, executor: Executor, db: DatabaseCalls
) -> Reply:
    modifications = body.get("modifications") or {}
    execution = await restart(
        executor,
        user,
        checkpoint_id,
        create_new_run=body.get("create_new_run", True),
        modified_query=modifications.get("modified_query"),
    )
    return await db(_started, execution), 201


async def fork_checkpoint(
    user: str, checkpoint_id: str, body: dict, executor: Executor, db: DatabaseCalls
) -> Reply:
    modifications = body.get("modifications") or {}
    execution = await restart(
        executor, user, checkpoint_id, system_prompt=modifications.get("system_prompt")
    )
    return await db(_started, execution), 201
