"""Seed 002's supervisor: the workers of the caller's jobs, their control and counts."""

from __future__ import annotations

from cadre.connexion.binding import Reply
from cadre.engine.supervisor import Supervisor
from cadre.replies import page_reply
from handlers.jobs import worker_fields
from models_gen.api import SupervisorMetrics, WorkerList
from models_gen.api import Worker as WorkerReply
from storage import jobs


def _reply(worker: jobs.Worker) -> WorkerReply:
    return WorkerReply.model_validate(worker_fields(worker))


def list_workers(
    user: str,
    limit: int,
    offset: int,
    workspace_id: str | None = None,
    status: str | None = None,
    after: str | None = None,
) -> Reply:
    jobs.sync_workers(owner_id=user)
    page = jobs.list_workers(
        user, workspace_id=workspace_id, status=status, limit=limit, offset=offset, after=after
    )
    filters = {"workspace_id": workspace_id, "status": status}
    path = "/api/v1/supervisor/workers"
    items = map(worker_fields, page.rows)
    return page_reply(WorkerList, page, items, path=path, limit=limit, offset=offset, **filters)


def get_worker(user: str, worker_id: str) -> Reply:
    worker = jobs.get_worker(worker_id, user)
    jobs.sync_workers(job_id=worker.job_id)
    return _reply(jobs.get_worker(worker_id, user)), 200


async def _control(user: str, worker_id: str, action: str, supervisor: Supervisor) -> Reply:
    worker = await supervisor.db(jobs.get_worker, worker_id, user)  # 404 unless the caller's
    return _reply(await supervisor.control_worker(worker, action)), 200


async def pause_worker(user: str, worker_id: str, supervisor: Supervisor) -> Reply:
    return await _control(user, worker_id, "pause", supervisor)


async def resume_worker(user: str, worker_id: str, supervisor: Supervisor) -> Reply:
    return await _control(user, worker_id, "resume", supervisor)


async def terminate_worker(user: str, worker_id: str, supervisor: Supervisor) -> Reply:
    return await _control(user, worker_id, "terminate", supervisor)


def get_supervisor_metrics(user: str) -> Reply:
    jobs.sync_workers(owner_id=user)
    by_status = jobs.worker_counts(user)
    return SupervisorMetrics.model_validate(
        {"total_workers": sum(by_status.values()), "by_status": by_status}
    ), 200
