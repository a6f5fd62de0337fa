"""On PostgreSQL the engine's database work runs off the event loop (``cadre.db_calls``).

A slow database (every batch of events takes 300 ms to write, as behind a row lock) must
not stall the loop while an execution streams tokens, and every event published is
stored, in order, by the time the execution is over.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from cadre.engine.launch import launch
from storage import db as storage_db
from storage import executions as store
from tests.conftest import TEST_DATABASE_URL

pytestmark = pytest.mark.skipif(
    TEST_DATABASE_URL is None or storage_db.is_embedded(TEST_DATABASE_URL),
    reason="SQLite runs storage inline, on the loop, by design (CADRE_TEST_DATABASE_URL)",
)


async def test_a_slow_database_does_not_stall_the_loop_while_tokens_stream(
    make_executor, owner, agent, monkeypatch
):
    executor, bus = make_executor()
    write = store.append_events
    batches: list[int] = []

    def slow_append(pending: list[Any], *rest: Any) -> None:
        time.sleep(0.3)  # blocks whichever thread runs it
        batches.append(len(pending))
        write(pending, *rest)

    monkeypatch.setattr(store, "append_events", slow_append)
    body = {"task": "t", "inputs": {"echo": {"tokens": 40, "delay_ms": 10}}}
    execution = launch(executor, owner, agent, body, None)

    gaps: list[float] = []
    task = executor.handles[execution.id].task
    assert task is not None
    while not task.done():
        before = time.monotonic()
        await asyncio.sleep(0.01)
        gaps.append(time.monotonic() - before)
    await task

    assert len(batches) >= 2  # the slow writes happened while the loop ticked
    assert max(gaps) < 0.2  # a write blocked on the database never blocked the loop
    published = [e["seq"] for e in bus.log if e["execution_id"] == execution.id]
    stored = [row.seq for row in store.events_after(execution.id, 0, 1000)]
    assert stored == published == list(range(1, len(published) + 1))
    assert bus.of(execution.id)[-1] == ("complete", "completed")
    assert store.get_status(execution.id) == "completed"
