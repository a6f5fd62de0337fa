"""How busy the engine is, across every process: for ``/health`` and ``/metrics``.

On PostgreSQL the workers are those Procrastinate knows beating, and the queue depth its
unclaimed jobs; on SQLite the one process runs everything, and what waits is ``queued``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge

from cadre.engine.executor import Executor
from storage import executions as store

QUERY_TIMEOUT_SECONDS = 2.0  # /health answers even while the queue's pool waits for a connection


@dataclass(frozen=True)
class Load:
    workers: int
    queue_depth: int
    running: int


async def workers(executor: Executor) -> int:
    """Live worker processes (0 when the queue's tables cannot be read)."""
    if executor.queue is None:
        return 1
    try:
        return await asyncio.wait_for(executor.queue.live_workers(), QUERY_TIMEOUT_SECONDS)
    except Exception:  # the database is down: /health says so, and no worker is known
        return 0


async def measure(executor: Executor) -> Load:
    running = await executor.db(store.count_with_status, "running")
    if executor.queue is None:
        depth = await executor.db(store.count_with_status, "queued")
    else:
        depth = await executor.queue.depth()
    return Load(workers=await workers(executor), queue_depth=depth, running=running)


class LoadMetrics:
    """The three engine gauges, set from ``measure`` whenever ``/metrics`` is read."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.workers = Gauge(
            "cadre_workers", "Worker processes running executions", registry=registry
        )
        self.queue_depth = Gauge(
            "cadre_queue_depth", "Executions waiting for a worker", registry=registry
        )
        self.running = Gauge(
            "cadre_executions_running", "Executions running, in every worker", registry=registry
        )

    async def refresh(self, executor: Executor) -> None:
        load = await measure(executor)
        self.workers.set(load.workers)
        self.queue_depth.set(load.queue_depth)
        self.running.set(load.running)
