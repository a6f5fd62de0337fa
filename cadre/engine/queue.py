"""Executions queued and claimed through Procrastinate (PostgreSQL only).

On SQLite an execution runs in the process that accepted it (``Executor`` alone). On
PostgreSQL every process hands new executions to a Procrastinate queue, and any number
of workers (``cadre worker``, or ``cadre serve`` unless ``--no-worker``) claim them.

Who runs an execution: one source of truth, the execution's own lease. The row's
``heartbeat_at`` is refreshed each second by the worker whose executor holds the run,
and a run is only ever taken with ``storage.executions.adopt``, one conditional UPDATE
that succeeds only while the lease is free (never set, cleared, or stale): of any number
of workers trying at once exactly one wins, so no execution runs twice at once.

A Procrastinate job is only a delivery, "someone please take this execution". It is
at-least-once and carries no ownership: the task adopts the execution and, having won,
runs it in this worker's executor until it leaves the worker (terminal, awaiting an
approval, or handed back on shutdown); having lost (held elsewhere, already over), it
ends at once. Procrastinate's own worker heartbeats only count live workers and clear
the ``doing`` jobs of dead ones; they decide nothing about executions.

Nothing stays stuck: a dispatched execution's lease is free (``NULL``) while it waits,
and on every beat each worker re-enqueues the unfinished executions whose lease is free
or stale and that have no job waiting (``queueing_lock`` = execution id keeps it to one).
So a job lost between the insert of an execution and its enqueue (a crash in between), a
worker killed mid-run (its lease goes stale after five beats), and a worker that shut
down (it clears its leases at once) all end with the execution queued again, claimed by
a live worker and resumed from its last checkpoint. The call a crash cut short is billed
once by the adopter (``Executor._bill_unbilled``); costs and checkpoints are written in
one transaction, so nothing is billed twice. Paused executions whose lease is free wait
without a job until resumed. The end of a run (terminal status) is stored in one
transaction with its ``complete`` event, so a run is never completed twice either.

Concurrency: a worker claims at most ``CADRE_MAX_CONCURRENT_EXECUTIONS`` jobs at once (a
paused run keeps its job); one user's running executions are capped across all workers
by ``cadre.engine.user_slots``.

Fencing: the lease names its holder (``lease_owner``, a random token per process,
``storage.executions.LEASE_OWNER``), written by ``adopt`` and by every other taker of a
lease (creation, leaving an approval) and cleared with ``heartbeat_at`` when a lease is
freed. A worker that is alive but cannot write its heartbeats for five seconds (a stalled
event loop, a partitioned database connection) can see its run adopted by another. Its
heartbeat refreshes only the rows it still owns and reports the others, whose runs it
stops at once without writing anything more (``Executor._abandon``: no checkpoint, cost,
status or event); a hand-back on shutdown frees only a lease still its own. Until that
beat, the writes that matter are fenced in their own transactions: a step's checkpoint
and cost record (``checkpoints.save_step``, which raises ``LeaseLost`` and rolls back) and
the progress stored with events, the end and the last step among it (``append_events``,
whose update is conditional on the owner; an execution whose update matched no row gets
none of its events or writes in that batch stored). Not fenced: the status writes of
pause, resume and the start of a slot (``update_execution``), which the adopter
overwrites with its own, and a batch of events carrying no progress (a streamed token
notes progress, so few do): its sequence numbers may collide with the adopter's, and the
unique index then refuses the later batch whole (fencing those too would cost a query
per batch).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import peewee
import procrastinate
from procrastinate import exceptions as procrastinate_errors
from procrastinate import jobs as procrastinate_jobs
from procrastinate.schema import SchemaManager

log = logging.getLogger("cadre.queue")

QUEUE = "executions"
TASK = "cadre.run_execution"
WORKER_HEARTBEAT_SECONDS = 2.0
WORKER_STALE_SECONDS = 10.0
SCHEMA_LOCK = 0x6361647265  # pg_advisory_xact_lock key: one process installs the schema
POOL_SIZE = 8  # connections per process: the LISTEN one, fetching, finishing jobs


def conninfo(database_url: str) -> str:
    """psycopg's connection string from Cadre's URL: no ``+pool`` suffix, no pool options
    (``max_connections``, ``stale_timeout``, ``timeout`` are Peewee's)."""
    parts = urlsplit(database_url)
    scheme = parts.scheme.split("+")[0]
    scheme = "postgresql" if scheme in {"postgres", "postgresql", "postgresext"} else scheme
    return urlunsplit((scheme, parts.netloc, parts.path, "", ""))


def install_schema(database: peewee.Database) -> bool:
    """Install Procrastinate's tables unless they are there (``cadre migrate``, and every
    process at start); True when this call did. Processes starting together take turns."""
    with database.atomic():
        cursor = database.cursor()
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        cursor.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
        if cursor.fetchone()[0]:
            return False
        cursor.execute(SchemaManager.get_schema())  # no parameters: its % signs stay as they are
    return True


class ExecutionQueue:
    """The Procrastinate app of one process: enqueue, run a worker, count workers and jobs."""

    def __init__(self, database_url: str) -> None:
        self.conninfo = conninfo(database_url)
        self.app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(
                conninfo=self.conninfo, min_size=1, max_size=POOL_SIZE
            )
        )
        self._runner: Callable[[str], Awaitable[None]] | None = None
        self.task = self.app.task(name=TASK, queue=QUEUE)(self._run)
        self._opened = False

    async def _run(self, execution_id: str) -> None:
        if self._runner is None:  # a process that runs no worker never fetches jobs
            raise RuntimeError("no executor to run executions in this process")
        await self._runner(execution_id)

    async def open(self) -> None:
        if not self._opened:
            await self.app.open_async()
            self._opened = True

    async def close(self) -> None:
        if self._opened:
            await self.app.close_async()
            self._opened = False

    async def enqueue(self, execution_id: str) -> bool:
        """Queue a delivery of the execution; False when one is already waiting."""
        try:
            await self.task.configure(queueing_lock=execution_id).defer_async(
                execution_id=execution_id
            )
        except procrastinate_errors.AlreadyEnqueued:
            return False
        return True

    async def work(
        self,
        runner: Callable[[str], Awaitable[None]],
        *,
        concurrency: int,
        grace_seconds: float,
        name: str | None = None,
    ) -> None:
        """Claim and run executions until cancelled; then stop claiming, give running
        ones ``grace_seconds`` to end, and abort the rest (``runner`` hands them back)."""
        self._runner = runner
        await self.app.run_worker_async(
            queues=[QUEUE],
            concurrency=concurrency,
            name=name,
            install_signal_handlers=False,
            delete_jobs="always",
            shutdown_graceful_timeout=grace_seconds,
            update_heartbeat_interval=WORKER_HEARTBEAT_SECONDS,
            stalled_worker_timeout=WORKER_STALE_SECONDS,
            fetch_job_polling_interval=1.0,
            abort_job_polling_interval=1.0,
        )

    async def clear_stalled(self) -> int:
        """Delete the ``doing`` jobs of workers that stopped beating (their executions'
        leases go stale too, and they are queued again from those); returns how many."""
        manager = self.app.job_manager
        await manager.prune_stalled_workers(WORKER_STALE_SECONDS)
        stalled = await manager.get_stalled_jobs(
            queue=QUEUE, seconds_since_heartbeat=WORKER_STALE_SECONDS
        )
        for job in stalled:
            with contextlib.suppress(Exception):  # another worker cleared it first
                await manager.finish_job(job, procrastinate_jobs.Status.FAILED, delete_job=True)
        return len(stalled)

    async def live_workers(self) -> int:
        row = await self.app.connector.execute_query_one_async(
            "SELECT count(*) AS n FROM procrastinate_workers "
            "WHERE last_heartbeat > now() - make_interval(secs => %(stale)s)",
            stale=WORKER_STALE_SECONDS,
        )
        return int(row["n"])

    async def depth(self) -> int:
        """Executions waiting for a worker (jobs not yet claimed)."""
        row = await self.app.connector.execute_query_one_async(
            "SELECT count(*) AS n FROM procrastinate_jobs "
            "WHERE queue_name = %(queue)s AND status = 'todo'",
            queue=QUEUE,
        )
        return int(row["n"])
