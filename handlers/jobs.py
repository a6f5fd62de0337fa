"""Seed 002's jobs: submit, read (with workers, results and cost), list, cancel."""

from __future__ import annotations

from typing import Any

from cadre.connexion.binding import Reply
from cadre.engine.supervisor import Supervisor
from cadre.json_limits import shown
from cadre.replies import page_reply
from models_gen.api import Job as JobReply
from models_gen.api import JobDetail, JobList
from models_gen.api import Worker as WorkerReply
from storage import jobs
from storage.jobs import Job

JOB_FIELDS = tuple(JobReply.model_fields)
WORKER_FIELDS = tuple(name for name in WorkerReply.model_fields if name != "job_id")


def job_fields(job: Job) -> dict[str, Any]:
    return {**{name: getattr(job, name) for name in JOB_FIELDS}, "inputs": shown(job.inputs)}


def _detail(job: Job) -> JobDetail:
    jobs.sync_workers(job_id=job.id)
    workers = jobs.workers_of(job.id)
    outputs = jobs.outputs([w.execution_id for w in workers])
    results = [
        {
            "worker_id": w.id,
            "execution_id": w.execution_id,
            "status": w.status,
            "output": outputs.get(w.execution_id),
        }
        for w in workers
    ]
    return JobDetail.model_validate(
        {
            **job_fields(job),
            "granted": jobs.held(job.id, job.depth),
            "workers": [worker_fields(w) for w in workers],
            "results": results,
            "cost": jobs.job_cost(job.id),
        }
    )


def worker_fields(worker: jobs.Worker) -> dict[str, Any]:
    return {**{name: getattr(worker, name) for name in WORKER_FIELDS}, "job_id": worker.job_id}


async def submit_job(user: str, body: dict, supervisor: Supervisor) -> Reply:
    job = await supervisor.db(supervisor.submit, user, body)
    return JobReply.model_validate(job_fields(job)), 201


def get_job(user: str, job_id: str) -> Reply:
    return _detail(jobs.get_job(job_id, user)), 200


def list_jobs(
    user: str,
    limit: int,
    offset: int,
    depth: int | None = None,
    status: str | None = None,
    parent_job_id: str | None = None,
    after: str | None = None,
) -> Reply:
    page = jobs.list_jobs(
        user,
        depth=depth,
        status=status,
        parent_job_id=parent_job_id,
        limit=limit,
        offset=offset,
        after=after,
    )
    filters = {"depth": depth, "status": status, "parent_job_id": parent_job_id}
    return page_reply(
        JobList,
        page,
        map(job_fields, page.rows),
        path="/api/v1/jobs",
        limit=limit,
        offset=offset,
        **filters,
    )


async def cancel_job(user: str, job_id: str, supervisor: Supervisor) -> Reply:
    job = await supervisor.cancel(await supervisor.db(jobs.get_job, job_id, user))
    return JobReply.model_validate(job_fields(job)), 200
