"""Many runs starting at once on SQLite: their store work is spread over turns of the
loop (``CADRE_INLINE_DB_MS_PER_TURN``, ``cadre.db_calls.TurnBudget``), so a run that is
streaming keeps publishing its tokens between their starts, and every run of the burst
still ends completed with all its events stored, in order.

Every assertion is about the order of events on the bus, never about elapsed time.
"""

from __future__ import annotations

import asyncio

import pytest

from cadre.engine.launch import launch, launch_async
from storage import db as storage_db
from storage import executions as store
from tests.conftest import TEST_DATABASE_URL
from tests.engine.test_executor import finished, index_of, until

pytestmark = pytest.mark.skipif(
    TEST_DATABASE_URL is not None and not storage_db.is_embedded(TEST_DATABASE_URL),
    reason="on PostgreSQL the calls run in threads: no turn budget applies",
)

BURST = 20


async def test_a_burst_of_starts_does_not_stall_a_streaming_run(make_executor, owner, agent):
    executor, bus = make_executor(turn_seconds=0, max_concurrent=64, max_concurrent_per_user=64)
    long_body = {"task": "t", "inputs": {"echo": {"tokens": 4000}}}
    streaming = launch(executor, owner, agent, long_body, None).id
    await until(lambda: any(e["execution_id"] == streaming for e in bus.log[3:]))

    body = {"task": "t", "inputs": {"echo": {"tokens": 3}}}
    db = executor.db
    launches = (launch_async(executor, owner, agent, body, None, db=db) for _ in range(BURST))
    burst = [execution.id for execution in await asyncio.gather(*launches)]
    await finished(executor, streaming, *burst)

    starts = sorted(index_of(bus, execution_id, "status", "running") for execution_id in burst)
    between = [
        e
        for e in bus.log[starts[0] : starts[-1]]
        if e["execution_id"] == streaming and e["type"] == "token"
    ]
    # One store call a turn with a budget of 0 s (two at most where a turn's newcomers
    # follow its woken one):
    # the twenty starts span at least ten turns, and the streaming run publishes in each.
    assert len(between) >= BURST // 4
    for execution_id in [streaming, *burst]:
        published = [e["seq"] for e in bus.log if e["execution_id"] == execution_id]
        stored = [row.seq for row in store.events_after(execution_id, 0, 5000)]
        assert stored == published == list(range(1, len(published) + 1))
        assert bus.of(execution_id)[-1] == ("complete", "completed")
        assert store.get_status(execution_id) == "completed"
