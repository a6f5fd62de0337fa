"""The lease's fence: a run whose lease another worker took writes nothing more for it.

Another worker is simulated by writing another owner into the row, as its ``adopt`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest

from storage import checkpoints, costs
from storage import executions as store
from storage.ids import utcnow
from tests.engine.conftest import queued_execution
from tests.engine.test_executor import finished, start, until

BILL = {"prompt_tokens": 3, "completion_tokens": 4, "cost_usd": 0.0, "priced": False}


def adopt_elsewhere(execution_id: str) -> None:
    """What another worker's ``adopt`` writes: its own token, a fresh heartbeat."""
    store.Execution.update(lease_owner="other-worker", heartbeat_at=utcnow()).where(
        store.Execution.id == execution_id
    ).execute()


def stored_events(execution_id: str) -> list[str]:
    return [row.type for row in store.events_after(execution_id, 0, 10_000)]


class TestFencedWrites:
    def test_a_step_of_a_run_adopted_elsewhere_stores_no_checkpoint_and_no_cost(self, owner, agent):
        execution = store.Execution.get_by_id(queued_execution(owner, agent))
        adopt_elsewhere(execution.id)

        with pytest.raises(store.LeaseLost):
            checkpoints.save_step(execution, 1, {"messages": []}, bill=BILL, totals={})

        assert checkpoints.latest(execution.id) is None
        assert costs.count_records(execution.id) == 0

    def test_a_step_of_a_run_still_held_stores_its_checkpoint_and_cost(self, owner, agent):
        execution = store.Execution.get_by_id(queued_execution(owner, agent))

        checkpoints.save_step(execution, 1, {"messages": []}, bill=BILL, totals={})

        assert checkpoints.latest(execution.id).step == 1
        assert costs.count_records(execution.id) == 1

    def test_a_step_of_a_run_still_held_sets_its_totals_with_its_cost(self, owner, agent):
        execution = store.Execution.get_by_id(queued_execution(owner, agent))
        totals = {"prompt_tokens": 3, "completion_tokens": 4, "steps": 1}

        checkpoints.save_step(execution, 1, {"messages": []}, bill=BILL, totals=totals)

        row = store.Execution.get_by_id(execution.id)
        assert (row.prompt_tokens, row.completion_tokens, row.steps) == (3, 4, 1)
        assert row.lease_owner == store.LEASE_OWNER
        assert costs.billed(execution.id) == (3, 4, 0.0)

    def test_a_step_of_a_run_adopted_elsewhere_leaves_its_totals(self, owner, agent):
        execution = store.Execution.get_by_id(queued_execution(owner, agent))
        adopt_elsewhere(execution.id)

        with pytest.raises(store.LeaseLost):
            checkpoints.save_step(execution, 1, {}, bill=BILL, totals={"prompt_tokens": 3})

        row = store.Execution.get_by_id(execution.id)
        assert (row.prompt_tokens, row.lease_owner) == (0, "other-worker")

    def test_events_and_end_of_a_run_adopted_elsewhere_are_not_stored(self, owner, agent):
        held, lost = queued_execution(owner, agent), queued_execution(owner, agent)
        adopt_elsewhere(lost)
        end = {"status": "completed", "stop_reason": "completed"}

        fenced = store.append_events(
            [(held, 1, "complete", {}), (lost, 1, "complete", {})], {held: end, lost: end}
        )

        assert fenced == {lost}
        assert stored_events(held) == ["complete"] and stored_events(lost) == []
        assert store.get_status(held) == "completed" and store.get_status(lost) == "queued"

    def test_a_last_step_is_stored_with_the_events_only_while_the_run_is_held(self, owner, agent):
        held, lost = queued_execution(owner, agent), queued_execution(owner, agent)
        adopt_elsewhere(lost)

        def last_step(execution_id: str) -> Callable[[], object]:
            execution = store.Execution.get_by_id(execution_id)
            return partial(checkpoints.store_step, execution, 1, {"messages": []}, bill=BILL)

        # No progress given: the step's write is fenced on its own.
        fenced = store.append_events(
            [(held, 1, "complete", {}), (lost, 1, "complete", {})],
            writes={held: [last_step(held)], lost: [last_step(lost)]},
        )

        assert fenced == {lost}
        assert checkpoints.latest(held).step == 1 and costs.count_records(held) == 1
        assert checkpoints.latest(lost) is None and costs.count_records(lost) == 0
        assert stored_events(lost) == []

    def test_the_beat_reports_runs_adopted_elsewhere_and_does_not_refresh_them(self, owner, agent):
        held, lost = queued_execution(owner, agent), queued_execution(owner, agent)
        adopt_elsewhere(lost)
        before = store.Execution.get_by_id(lost).heartbeat_at

        assert store.touch_and_read_controls([held, lost]) == ({}, {lost})
        assert store.Execution.get_by_id(lost).heartbeat_at == before


class TestLosingTheLease:
    async def test_a_running_run_adopted_elsewhere_stops_without_writing_anything_more(
        self, make_executor, owner, agent
    ):
        executor, bus = make_executor(heartbeat_seconds=0.05)
        await executor.start()
        run = start(executor, owner, agent, tokens=400, delay_ms=10)
        await until(lambda: ("token", None) in bus.of(run))

        adopt_elsewhere(run)
        events = stored_events(run)  # from here on the row is the other worker's
        checkpoint = checkpoints.latest(run)
        await finished(executor, run)

        assert run not in executor.handles
        assert stored_events(run) == events
        assert "complete" not in events
        assert checkpoints.latest(run).id == checkpoint.id
        assert costs.count_records(run) == 0
        row = store.Execution.get_by_id(run)
        assert (row.status, row.lease_owner, row.completed_at) == (
            "running",
            "other-worker",
            None,
        )
