"""Hierarchical jobs, their workers (one execution each), and per-user quotas of
concurrent workers per depth.

A job holds a *grant* at its depth (``Allocation``); the sum of a user's grants at a
depth is kept in ``QuotaUsage``. ``allocate`` changes both in one transaction whose
first statement locks the user's usage row (a row lock on PostgreSQL, the write lock
on SQLite), so concurrent allocations are applied one after the other and never
grant past the quota.
"""

from __future__ import annotations

import secrets
from typing import Any

import peewee

from cadre.errors import NotFound
from storage import counts
from storage.db import BaseModel, database
from storage.executions import Execution
from storage.fields import JSONField, UTCDateTimeField
from storage.ids import new_id, utcnow
from storage.queries import Page, owned, paginate, rarely_true
from storage.users import User

JOB_UNFINISHED = ("PENDING", "RUNNING")
JOB_TERMINAL = ("COMPLETED", "FAILED", "CANCELED")
WORKER_ACTIVE = ("IDLE", "RUNNING", "PAUSED")
WORKER_STATUSES = ("IDLE", "RUNNING", "PAUSED", "COMPLETED", "FAILED", "TERMINATED")
# A worker's status is its execution's, in the seed's words.
FROM_EXECUTION = {
    "queued": "IDLE",
    "running": "RUNNING",
    "paused": "PAUSED",
    "requires_action": "PAUSED",
    "completed": "COMPLETED",
    "failed": "FAILED",
    "cancelled": "TERMINATED",
}


class Job(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    owner = peewee.ForeignKeyField(User, backref="jobs", on_delete="CASCADE")
    task_description = peewee.TextField()
    worker_count = peewee.IntegerField()
    depth = peewee.IntegerField()
    parent_job_id = peewee.CharField(max_length=40, null=True, index=True)
    agent_id = peewee.CharField(max_length=40, null=True)  # None: the default echo agent
    agent_name = peewee.CharField(max_length=64)
    config = JSONField()  # the agent's effective values when the job was submitted
    inputs = JSONField()  # given to every worker's execution
    workspace_id = peewee.CharField(max_length=40)
    status = peewee.CharField(max_length=16, default="PENDING", index=True)
    error = peewee.TextField(null=True)
    created_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)
    completed_at = UTCDateTimeField(null=True)

    class Meta:
        indexes = ((("owner", "created_at", "id"), False),)


class Worker(BaseModel):
    """One run of a job's task: ``slot`` is which of its ``worker_count`` runs, ``attempt``
    which try at it (retries start a new worker)."""

    id = peewee.CharField(primary_key=True, max_length=40)
    owner = peewee.ForeignKeyField(User, backref="workers", on_delete="CASCADE")
    job = peewee.ForeignKeyField(Job, backref="workers", on_delete="CASCADE")
    slot = peewee.IntegerField()
    attempt = peewee.IntegerField(default=0)
    workspace_id = peewee.CharField(max_length=40)
    execution_id = peewee.CharField(max_length=40)
    status = peewee.CharField(max_length=16, default="IDLE", index=True)
    created_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)

    class Meta:
        indexes = (
            (("job", "slot", "attempt"), True),  # two supervisors never start the same run
            (("owner", "created_at", "id"), False),
        )


class QuotaUsage(BaseModel):
    owner = peewee.ForeignKeyField(User, on_delete="CASCADE")
    depth = peewee.IntegerField()
    allocated = peewee.IntegerField(default=0)

    class Meta:
        primary_key = peewee.CompositeKey("owner", "depth")


class Allocation(BaseModel):
    job = peewee.ForeignKeyField(Job, on_delete="CASCADE")
    depth = peewee.IntegerField()
    owner = peewee.ForeignKeyField(User, on_delete="CASCADE")
    granted = peewee.IntegerField(default=0)

    class Meta:
        primary_key = peewee.CompositeKey("job", "depth")


def new_job_id() -> str:
    return "j_" + secrets.token_hex(6)


# -- jobs ------------------------------------------------------------------------------


def create_job(**fields: Any) -> Job:
    with database.atomic():
        now = utcnow()
        job = Job.create(id=new_job_id(), created_at=now, updated_at=now, **fields)
        counts.bump(job.owner_id, "job")
        return job


def get_job(job_id: str, owner_id: str | None) -> Job:
    job = owned(Job.select(), Job, owner_id).where(Job.id == job_id).first()
    if job is None:
        raise NotFound(f"No job '{job_id}'.", error="job_not_found")
    return job


def list_jobs(
    owner_id: str,
    *,
    depth: int | None,
    status: str | None,
    parent_job_id: str | None,
    limit: int,
    offset: int,
    after: str | None = None,
) -> Page:
    """Newest first."""
    query = owned(Job.select(), Job, owner_id)
    unfiltered = depth is None and status is None and parent_job_id is None
    if depth is not None:
        query = query.where(Job.depth == depth)
    if status is not None:
        query = query.where(Job.status == status)
    if parent_job_id is not None:
        query = query.where(Job.parent_job_id == parent_job_id)
    return paginate(
        query,
        (Job.created_at, Job.id),
        limit=limit,
        offset=offset,
        after=after,
        descending=True,
        count=(lambda: counts.count(owner_id, "job")) if unfiltered else None,
    )


def unfinished_jobs() -> list[Job]:
    """Every user's jobs still to drive, oldest first (they take freed capacity first)."""
    query = Job.select().where(rarely_true(Job.status.in_(JOB_UNFINISHED)))
    return list(query.order_by(Job.created_at, Job.id))


def children(job_ids: list[str]) -> list[Job]:
    return list(Job.select().where(Job.parent_job_id.in_(job_ids))) if job_ids else []


def descendants(job: Job) -> list[Job]:
    """Every job below ``job``, a query per level."""
    found: list[Job] = []
    level = [job.id]
    while level:
        below = children(level)
        found.extend(below)
        level = [child.id for child in below]
    return found


def finish_job(job: Job, status: str, error: str | None = None) -> bool:
    """Move an unfinished job to ``status`` and release its grants, in one transaction;
    False when it had already finished (another request or supervisor got there first)."""
    now = utcnow()
    with database.atomic():
        changed = (
            Job.update(status=status, error=error, updated_at=now, completed_at=now)
            .where((Job.id == job.id) & Job.status.in_(JOB_UNFINISHED))
            .execute()
        )
        if changed:
            release(job.owner_id, job.id, job.depth)
    return bool(changed)


def start_job(job: Job) -> None:
    Job.update(status="RUNNING", updated_at=utcnow()).where(
        (Job.id == job.id) & (Job.status == "PENDING")
    ).execute()


def job_cost(job_id: str) -> float:
    total = (
        Execution.select(peewee.fn.SUM(Execution.cost_usd))
        .join(Worker, on=(Worker.execution_id == Execution.id))
        .where(Worker.job == job_id)
        .scalar()
    )
    return float(total or 0.0)


def outputs(execution_ids: list[str]) -> dict[str, str]:
    """Each execution's answer so far (its result's ``output``), those that have one."""
    if not execution_ids:
        return {}
    query = Execution.select(Execution.id, Execution.result).where(Execution.id.in_(execution_ids))
    return {
        row.id: row.result["output"]
        for row in query
        if isinstance(row.result, dict) and isinstance(row.result.get("output"), str)
    }


def endings(execution_ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
    """Each execution's ``stop_reason`` and ``error``."""
    if not execution_ids:
        return {}
    query = Execution.select(Execution.id, Execution.stop_reason, Execution.error).where(
        Execution.id.in_(execution_ids)
    )
    return {row.id: (row.stop_reason, row.error) for row in query}


# -- workers ---------------------------------------------------------------------------


def create_worker(**fields: Any) -> Worker:
    now = utcnow()
    worker = Worker.create(id=new_id("worker"), created_at=now, updated_at=now, **fields)
    counts.bump(worker.owner_id, "worker")
    return worker


def workers_of(job_id: str) -> list[Worker]:
    return list(Worker.select().where(Worker.job == job_id).order_by(Worker.slot, Worker.attempt))


def get_worker(worker_id: str, owner_id: str | None) -> Worker:
    worker = owned(Worker.select(), Worker, owner_id).where(Worker.id == worker_id).first()
    if worker is None:
        raise NotFound(f"No worker '{worker_id}'.", error="worker_not_found")
    return worker


def list_workers(
    owner_id: str,
    *,
    workspace_id: str | None,
    status: str | None,
    limit: int,
    offset: int,
    after: str | None = None,
) -> Page:
    """Newest first."""
    query = owned(Worker.select(), Worker, owner_id)
    unfiltered = workspace_id is None and status is None
    if workspace_id is not None:
        query = query.where(Worker.workspace_id == workspace_id)
    if status is not None:
        query = query.where(Worker.status == status)
    return paginate(
        query,
        (Worker.created_at, Worker.id),
        limit=limit,
        offset=offset,
        after=after,
        descending=True,
        count=(lambda: counts.count(owner_id, "worker")) if unfiltered else None,
    )


def sync_workers(owner_id: str | None = None, job_id: str | None = None) -> int:
    """Bring active workers' statuses up to their executions'; returns how many changed.

    Only active workers are read (finished ones never change), with their executions'
    statuses in the same query.
    """
    query = (
        Worker.select(Worker.id, Worker.status, Execution.status.alias("execution_status"))
        .join(Execution, on=(Worker.execution_id == Execution.id))
        .where(rarely_true(Worker.status.in_(WORKER_ACTIVE)))
    )
    if owner_id is not None:
        query = query.where(Worker.owner == owner_id)
    if job_id is not None:
        query = query.where(Worker.job == job_id)
    changed = 0
    now = utcnow()
    for row in query.dicts():
        status = FROM_EXECUTION.get(row["execution_status"], row["status"])
        if status != row["status"]:
            Worker.update(status=status, updated_at=now).where(
                (Worker.id == row["id"]) & (Worker.status == row["status"])
            ).execute()
            changed += 1
    return changed


def worker_counts(owner_id: str) -> dict[str, int]:
    by_status = dict.fromkeys(WORKER_STATUSES, 0)
    query = (
        Worker.select(Worker.status, peewee.fn.COUNT(Worker.id).alias("n"))
        .where(Worker.owner == owner_id)
        .group_by(Worker.status)
    )
    for row in query.dicts():
        by_status[row["status"]] = row["n"]
    return by_status


# -- quotas ----------------------------------------------------------------------------


def usage(owner_id: str) -> dict[int, int]:
    """Workers allocated per depth to the owner's jobs."""
    query = QuotaUsage.select(QuotaUsage.depth, QuotaUsage.allocated).where(
        QuotaUsage.owner == owner_id
    )
    return {row.depth: row.allocated for row in query}


def held(job_id: str, depth: int) -> int:
    found = (
        Allocation.select(Allocation.granted)
        .where((Allocation.job == job_id) & (Allocation.depth == depth))
        .scalar()
    )
    return found or 0


def _lock_usage(owner_id: str, depth: int) -> int:
    """Lock the owner's usage row at ``depth`` (creating it) and return its allocation.

    The no-op UPDATE comes first in the transaction: on PostgreSQL it takes the row's
    lock, on SQLite the database's write lock, so no other allocation reads the row
    until this transaction ends.
    """
    locked = (
        QuotaUsage.update(allocated=QuotaUsage.allocated)
        .where((QuotaUsage.owner == owner_id) & (QuotaUsage.depth == depth))
        .execute()
    )
    if not locked:
        QuotaUsage.insert(owner=owner_id, depth=depth, allocated=0).on_conflict_ignore().execute()
        QuotaUsage.update(allocated=QuotaUsage.allocated).where(
            (QuotaUsage.owner == owner_id) & (QuotaUsage.depth == depth)
        ).execute()
    return (
        QuotaUsage.select(QuotaUsage.allocated)
        .where((QuotaUsage.owner == owner_id) & (QuotaUsage.depth == depth))
        .scalar()
    )


def allocate(owner_id: str, job_id: str, depth: int, target: int, quota: int) -> int:
    """Top the job's grant at ``depth`` up to ``target``, never past ``quota`` for the
    owner's jobs at that depth together; returns what the job holds afterwards.

    A finished job is granted nothing: it released its grant when it finished, and
    reading its status after the lock means it cannot finish between the two.
    """
    with database.atomic():
        allocated = _lock_usage(owner_id, depth)
        current = held(job_id, depth)
        if not Job.select().where((Job.id == job_id) & Job.status.in_(JOB_UNFINISHED)).exists():
            return current
        extra = max(0, min(target - current, quota - allocated))
        if extra:
            QuotaUsage.update(allocated=QuotaUsage.allocated + extra).where(
                (QuotaUsage.owner == owner_id) & (QuotaUsage.depth == depth)
            ).execute()
            (
                Allocation.insert(job=job_id, depth=depth, owner=owner_id, granted=current + extra)
                .on_conflict(
                    conflict_target=[Allocation.job, Allocation.depth],
                    update={Allocation.granted: current + extra},
                )
                .execute()
            )
        return current + extra


def shrink(owner_id: str, job_id: str, depth: int, target: int) -> int:
    """Give back what the job holds at ``depth`` beyond ``target``; returns how much."""
    with database.atomic():
        _lock_usage(owner_id, depth)
        current = held(job_id, depth)
        freed = max(0, current - max(0, target))
        if freed:
            QuotaUsage.update(allocated=QuotaUsage.allocated - freed).where(
                (QuotaUsage.owner == owner_id) & (QuotaUsage.depth == depth)
            ).execute()
            Allocation.update(granted=current - freed).where(
                (Allocation.job == job_id) & (Allocation.depth == depth)
            ).execute()
        return freed


def release(owner_id: str, job_id: str, depth: int) -> int:
    """Give back everything the job holds at ``depth``; returns how much."""
    return shrink(owner_id, job_id, depth, 0)
