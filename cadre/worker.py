"""``cadre worker``: a process that only claims and runs queued executions (PostgreSQL).

SIGTERM or SIGINT: it stops claiming, lets its running executions finish within
``CADRE_SHUTDOWN_GRACE_SECONDS``, hands the rest back to the queue at their last
checkpoint, and exits. SIGKILL: its leases go stale and live workers take its
executions over (``cadre.engine.queue``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket

from cadre.app import engine_config, event_fanout, execution_queue
from cadre.db_calls import DatabaseCalls
from cadre.engine.events import EventBus
from cadre.engine.executor import Executor
from cadre.engine.queue import install_schema
from cadre.settings import Settings
from storage import db

log = logging.getLogger("cadre.worker")


async def run(settings: Settings, concurrency: int | None) -> None:
    """Run one worker until SIGTERM or SIGINT."""
    logging.basicConfig(level=settings.log_level.upper())
    database = db.open_database(settings.effective_database_url)
    queue = execution_queue(settings)
    assert queue is not None, "a worker needs PostgreSQL"
    config = engine_config(settings)
    if concurrency is not None:  # per worker: the local slots and the claimed jobs alike
        config = dataclasses.replace(config, max_concurrent=concurrency)
    calls = DatabaseCalls(settings.effective_database_url, settings.inline_db_ms_per_turn / 1000)
    fanout = event_fanout(settings)  # its runs' events reach other processes' subscribers
    bus = EventBus(db=calls, fanout=fanout, history=settings.stream_history_events)
    executor = Executor(config, bus, calls, queue, fanout=fanout)
    await calls(install_schema, database)
    await queue.open()
    await executor.start()
    name = f"{socket.gethostname()}:{os.getpid()}"
    working = asyncio.create_task(executor.work(name=name))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, working.cancel)
    log.info("worker %s claiming up to %d executions at once", name, config.max_concurrent)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await working
    finally:
        await executor.stop()
        await queue.close()
        if fanout is not None:
            await fanout.aclose()
        db.close_all(database)
    log.info("worker %s stopped", name)
