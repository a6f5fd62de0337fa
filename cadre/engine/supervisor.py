"""Seed 002's jobs: submitted, driven to the end by a small loop, cancelled as a tree.

A job asks for ``worker_count`` runs of its task, each a *worker*: one execution (mode
``safe``, in the owner's workspace) of the job's agent, or of the default echo agent.
On submission the job is granted what its depth's quota has free for its owner (quotas
are per user: one user's jobs cannot exhaust another's). The supervisor starts as many
workers as the grant allows, and more as they finish or capacity frees up, topping the
grant up; a job that needs fewer gives the rest back at once.

Every ``tick_seconds`` (sooner when poked by a submission) it reads the unfinished jobs
from the database (the source of truth, so a restarted server carries on) and:

- moves each active worker to its execution's status;
- marks the job ``RUNNING`` once one of its workers has started;
- restarts a ``FAILED`` worker as a new one up to ``retries`` times, then fails the job
  (a run a server stop cut short, ``interrupted``, is restarted without counting, up to
  ``MAX_INTERRUPTIONS`` times); a job also fails when a child job fails. A failing
  job's other workers and child jobs are cancelled;
- completes the job when every worker finished (``COMPLETED``, or ``TERMINATED`` by a
  user) and every child job is finished; a job whose workers were all terminated ends
  ``CANCELED``.

A job that finishes, fails or is cancelled releases its grant in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import peewee

from cadre.db_calls import DatabaseCalls
from cadre.engine.executor import Executor
from cadre.errors import CadreError, Conflict, ValidationFailed
from cadre.json_limits import check_size
from storage import agents, jobs
from storage import executions as store
from storage.db import database
from storage.jobs import Job, Worker

log = logging.getLogger("cadre.engine")

DEFAULT_AGENT = "echo"  # the agent id and name of the executions of a job without an agent
# A worker whose run was cut short by a server stop (``interrupted``) is started again
# without counting as a failure, this many times at most.
MAX_INTERRUPTIONS = 3
CONTROL = {"pause": "pause", "resume": "resume", "terminate": "cancel"}
CONTROLLABLE = {
    "pause": ("IDLE", "RUNNING"),
    "resume": ("PAUSED",),
    "terminate": jobs.WORKER_ACTIVE,
}


@dataclass(frozen=True)
class SupervisorConfig:
    quotas: tuple[int, ...] = (10, 8, 5, 3, 2, 1)
    max_workers: int = 10
    retries: int = 0
    tick_seconds: float = 0.5

    def quota(self, depth: int) -> int:
        return self.quotas[depth] if 0 <= depth < len(self.quotas) else 0


class Supervisor:
    def __init__(
        self, config: SupervisorConfig, executor: Executor, db: DatabaseCalls | None = None
    ) -> None:
        self.config = config
        self.executor = executor
        self.db = db or executor.db  # storage calls of the async paths (the tick included)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop_of: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._loop_of = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def poke(self) -> None:
        """Tick now rather than at the next interval; callable from any thread (on
        PostgreSQL the resource handlers run in the threadpool)."""
        loop = self._loop_of
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            self._wake.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.tick_seconds)
            self._wake.clear()
            try:
                await self.tick()
            except Exception:  # the loop must outlive a database hiccup
                log.exception("job supervisor tick failed")

    # -- submitting ----------------------------------------------------------------------

    def submit(self, owner_id: str, body: dict[str, Any]) -> Job:
        """Create a job (``body`` validated against ``JobSubmit``) and grant it workers."""
        depth, count = body["depth"], body["worker_count"]
        if count > self.config.max_workers:
            raise ValidationFailed(
                f"A job runs at most {self.config.max_workers} workers.",
                details={"body.worker_count": f"more than {self.config.max_workers}"},
            )
        deepest = len(self.config.quotas) - 1
        if depth > deepest:
            raise ValidationFailed(
                f"Jobs go {deepest} levels deep at most.",
                error="invalid_depth",
                details={"body.depth": f"deeper than {deepest}"},
            )
        inputs = body.get("inputs") or {}
        check_size(inputs, self.executor.config.max_inputs_bytes, "body.inputs")
        agent_id, agent_name, config = self._agent(owner_id, body.get("agent_id"))
        with database.atomic():
            parent_id = body.get("parent_job_id")
            if parent_id is not None:
                parent = jobs.get_job(parent_id, owner_id)
                if depth != parent.depth + 1:
                    raise ValidationFailed(
                        f"A child of a depth {parent.depth} job has depth {parent.depth + 1}.",
                        error="invalid_depth",
                        details={"body.depth": f"must be {parent.depth + 1}, its parent's + 1"},
                    )
                if parent.status in jobs.JOB_TERMINAL:
                    raise Conflict(
                        f"Job '{parent.id}' is {parent.status}: it takes no more child jobs.",
                        error="parent_job_finished",
                        details={"parent_job_id": parent.status},
                    )
            job = jobs.create_job(
                owner=owner_id,
                task_description=body["task_description"],
                worker_count=count,
                depth=depth,
                parent_job_id=parent_id,
                agent_id=agent_id,
                agent_name=agent_name,
                config=config,
                inputs=inputs,
                workspace_id=owner_id,
            )
            jobs.allocate(owner_id, job.id, depth, count, self.config.quota(depth))
        self.poke()
        return job

    @staticmethod
    def _agent(owner_id: str, ref: str | None) -> tuple[str | None, str, dict[str, Any]]:
        if ref is None:
            return None, DEFAULT_AGENT, dict(agents.DEFAULTS)
        agent = agents.get_agent(ref, owner_id)
        if agent.status != "active":
            raise Conflict(f"Agent '{agent.name}' is disabled.", error="agent_disabled")
        return agent.id, agent.name, agents.resolve([agent])[0].values

    def allocate(self, owner_id: str, job_id: str, depth: int, requested: int) -> int:
        """Top the job's grant up to ``requested`` (at most its ``worker_count``)."""
        job = self._job_at(owner_id, job_id, depth)
        granted = jobs.allocate(
            owner_id, job.id, depth, min(requested, job.worker_count), self.config.quota(depth)
        )
        self.poke()
        return granted

    def release(self, owner_id: str, job_id: str, depth: int) -> int:
        job = self._job_at(owner_id, job_id, depth)
        if job.status not in jobs.JOB_TERMINAL:
            raise Conflict(
                f"Job '{job.id}' is {job.status}: its workers hold its grant. "
                "Cancel the job to free them.",
                error="job_unfinished",
                details={"status": job.status},
            )
        return jobs.release(owner_id, job.id, depth)

    @staticmethod
    def _job_at(owner_id: str, job_id: str, depth: int) -> Job:
        job = jobs.get_job(job_id, owner_id)
        if depth != job.depth:
            raise ValidationFailed(
                f"Job '{job.id}' runs at depth {job.depth}.",
                error="invalid_depth",
                details={"body.depth": f"the job's depth is {job.depth}"},
            )
        return job

    # -- control -------------------------------------------------------------------------

    async def cancel(self, job: Job) -> Job:
        """Cancel the job, its unfinished child jobs (all the way down) and their workers."""
        if not await self.db(jobs.finish_job, job, "CANCELED"):
            status = (await self.db(jobs.get_job, job.id, None)).status
            raise Conflict(
                f"Job '{job.id}' is already {status}.",
                error="job_finished",
                details={"status": status},
            )
        await self._stop_below(job)
        return await self.db(jobs.get_job, job.id, None)

    async def _stop_below(self, job: Job) -> None:
        """Cancel what still runs of a job that just finished: its workers, its child jobs'."""
        tree = [job]
        for child in await self.db(jobs.descendants, job):
            if await self.db(jobs.finish_job, child, "CANCELED"):
                tree.append(child)
        for node in tree:
            for worker in await self.db(jobs.workers_of, node.id):
                if worker.status in jobs.WORKER_ACTIVE:
                    await self._cancel_execution(worker.execution_id)
            await self.db(jobs.sync_workers, job_id=node.id)

    async def _cancel_execution(self, execution_id: str) -> None:
        with contextlib.suppress(Conflict):  # it finished meanwhile
            await self.executor.control(execution_id, "cancel")

    async def control_worker(self, worker: Worker, action: str) -> Worker:
        """``pause``, ``resume`` or ``terminate`` (cancel) the worker's execution; 409 for a
        transition its status forbids."""
        await self.db(jobs.sync_workers, job_id=worker.job_id)
        worker = await self.db(jobs.get_worker, worker.id, None)
        if worker.status not in CONTROLLABLE[action]:
            raise Conflict(
                f"Cannot {action} a worker that is {worker.status}.",
                error="invalid_transition",
                details={"status": worker.status},
            )
        await self.executor.control(worker.execution_id, CONTROL[action])
        await self.db(jobs.sync_workers, job_id=worker.job_id)
        self.poke()
        return await self.db(jobs.get_worker, worker.id, None)

    # -- the loop ----------------------------------------------------------------------------

    async def tick(self) -> None:
        await self.db(jobs.sync_workers)
        for job in await self.db(jobs.unfinished_jobs):
            try:
                await self._drive(job)
            except CadreError:
                log.exception("job %s could not go on", job.id)

    async def _drive(self, job: Job) -> None:
        workers = await self.db(jobs.workers_of, job.id)  # by slot, then attempt: the last try wins
        latest = {worker.slot: worker for worker in workers}
        if job.status == "PENDING" and any(w.status != "IDLE" for w in latest.values()):
            await self.db(jobs.start_job, job)
        failed = [w.execution_id for w in workers if w.status == "FAILED"]
        ended = await self.db(jobs.endings, failed)
        failures: dict[int, int] = {}  # per slot, not counting runs a server stop cut short
        for worker in workers:
            if worker.status == "FAILED" and ended[worker.execution_id][0] != "interrupted":
                failures[worker.slot] = failures.get(worker.slot, 0) + 1
        for slot, worker in latest.items():
            gave_up = worker.attempt >= self.config.retries + MAX_INTERRUPTIONS
            if worker.status == "FAILED" and (
                failures.get(slot, 0) > self.config.retries or gave_up
            ):
                reason = ended[worker.execution_id][1] or "no reason given"
                await self._fail(job, f"Worker '{worker.id}' failed: {reason}")
                return
        kids = await self.db(jobs.children, [job.id])
        broken = next((kid for kid in kids if kid.status == "FAILED"), None)
        if broken is not None:
            await self._fail(job, f"Child job '{broken.id}' failed.")
            return
        active = [w for w in latest.values() if w.status in jobs.WORKER_ACTIVE]
        to_start = [(slot, 0) for slot in range(job.worker_count) if slot not in latest]
        to_start += [(w.slot, w.attempt + 1) for w in latest.values() if w.status == "FAILED"]
        need = len(active) + len(to_start)
        granted = await self.db(jobs.held, job.id, job.depth)
        if need == 0:
            if granted:
                await self.db(jobs.release, job.owner_id, job.id, job.depth)
            if all(kid.status in jobs.JOB_TERMINAL for kid in kids):
                # every worker terminated by hand, none completed: nothing ran to the end
                ended = {w.status for w in latest.values()}
                await self.db(jobs.start_job, job)
                await self.db(
                    jobs.finish_job, job, "CANCELED" if ended == {"TERMINATED"} else "COMPLETED"
                )
            return
        if granted < need:
            quota = self.config.quota(job.depth)
            usage = await self.db(jobs.usage, job.owner_id)
            if usage.get(job.depth, 0) < quota:  # else nothing to take
                granted = await self.db(jobs.allocate, job.owner_id, job.id, job.depth, need, quota)
        elif granted > need:
            await self.db(jobs.shrink, job.owner_id, job.id, job.depth, need)
        for slot, attempt in sorted(to_start)[: max(0, granted - len(active))]:
            execution = await self.db(self._create_worker, job, slot, attempt)
            if execution is not None:
                self.executor.submit(execution, new=True)

    async def _fail(self, job: Job, error: str) -> None:
        if await self.db(jobs.finish_job, job, "FAILED", error):
            await self._stop_below(job)

    @staticmethod
    def _create_worker(job: Job, slot: int, attempt: int) -> store.Execution | None:
        """A worker's execution and row, in one transaction (``None``: another supervisor
        started this one); the caller submits the execution, on the event loop."""
        config = job.config
        try:
            with database.atomic():
                execution = store.create_execution(
                    owner=job.owner_id,
                    agent_id=job.agent_id or DEFAULT_AGENT,
                    agent_name=job.agent_name,
                    task=job.task_description,
                    mode="safe",
                    inputs=job.inputs,
                    config=config,
                    provider=config["provider"],
                    model=config["model"],
                )
                jobs.create_worker(
                    owner=job.owner_id,
                    job=job.id,
                    slot=slot,
                    attempt=attempt,
                    workspace_id=job.workspace_id,
                    execution_id=execution.id,
                )
        except (peewee.IntegrityError, Conflict):  # another supervisor started this one
            return None
        return execution
