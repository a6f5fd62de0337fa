"""The executor on its own: queueing under the cap, control transitions, terminal states.

Every assertion is about the order of events on the bus, never about elapsed time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from cadre.engine import executor as executor_module
from cadre.engine.executor import Executor
from cadre.engine.launch import launch
from cadre.engine.restore import restart
from cadre.errors import Conflict
from storage import agents, checkpoints
from storage import executions as store
from storage.ids import utcnow
from tests.engine.conftest import RecordingBus, queued_execution


def start(executor: Executor, owner: str, agent: str, **echo: Any) -> str:
    body = {"task": "one two three", "inputs": {"echo": echo}}
    return launch(executor, owner, agent, body, None).id


async def finished(executor: Executor, *execution_ids: str) -> None:
    tasks = [executor.handles[i].task for i in execution_ids if i in executor.handles]
    await asyncio.wait_for(asyncio.gather(*tasks), 30)


async def until(condition: Callable[[], bool]) -> None:
    """Wait (polling, up to a generous deadline) for ``condition``; fail if it never holds."""
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


def index_of(bus: RecordingBus, execution_id: str, type_: str, status: str | None = None) -> int:
    return next(
        i
        for i, e in enumerate(bus.log)
        if e["execution_id"] == execution_id
        and e["type"] == type_
        and (status is None or e.get("status") == status)
    )


class TestQueueing:
    async def test_executions_over_the_cap_wait_queued_and_run_in_order(
        self, make_executor, owner, agent
    ):
        executor, bus = make_executor(max_concurrent=1)
        first, second, third = (start(executor, owner, agent, tokens=3) for _ in range(3))

        await finished(executor, first, second, third)

        running = [i for i, e in enumerate(bus.log) if e.get("status") == "running"]
        assert [bus.log[i]["execution_id"] for i in running] == [first, second, third]
        assert index_of(bus, first, "complete") < index_of(bus, second, "status", "running")
        assert index_of(bus, second, "complete") < index_of(bus, third, "status", "running")

    async def test_a_queued_execution_says_so_until_a_slot_frees(self, make_executor, owner, agent):
        executor, bus = make_executor(max_concurrent=1)
        first = start(executor, owner, agent, tokens=50, delay_ms=20)
        second = start(executor, owner, agent, tokens=1)
        await until(lambda: ("status", "running") in bus.of(first))

        assert store.get_status(second) == "queued"
        await executor.control(first, "cancel")
        await finished(executor, second)
        assert bus.of(second)[:2] == [("status", "queued"), ("status", "running")]

    async def test_within_the_cap_executions_run_side_by_side(self, make_executor, owner, agent):
        executor, bus = make_executor(max_concurrent=2)
        first = start(executor, owner, agent, tokens=50, delay_ms=20)
        second = start(executor, owner, agent, tokens=50, delay_ms=20)

        await until(lambda: all(("status", "running") in bus.of(e) for e in (first, second)))

        assert store.get_status(first) == store.get_status(second) == "running"
        await executor.control(first, "cancel")
        await executor.control(second, "cancel")


class TestControl:
    async def test_cancel_stops_a_running_execution_with_no_token_after_it(
        self, make_executor, owner, agent
    ):
        executor, bus = make_executor()
        execution = start(executor, owner, agent, tokens=500, delay_ms=10)
        await until(lambda: ("token", None) in bus.of(execution))

        await executor.control(execution, "cancel")
        cancelled_at = len(bus.log)
        await finished(executor, execution)

        events = bus.of(execution)
        assert events[-1] == ("complete", "cancelled")
        assert bus.log[cancelled_at:] == []  # finished by the time cancel returned
        assert store.get_status(execution) == "cancelled"
        assert store.get_execution(execution, None).stop_reason == "cancelled"
        assert ("token", None) in events and len([e for e in events if e[0] == "token"]) < 500

    async def test_cancelling_a_queued_execution_means_it_never_runs(
        self, make_executor, owner, agent
    ):
        executor, bus = make_executor(max_concurrent=1)
        first = start(executor, owner, agent, tokens=50, delay_ms=20)
        second = start(executor, owner, agent, tokens=3)
        await until(lambda: ("status", "running") in bus.of(first))  # second waits its turn

        await executor.control(second, "cancel")
        await executor.control(first, "cancel")

        assert bus.of(second) == [("status", "queued"), ("complete", "cancelled")]

    async def test_pause_holds_the_stream_until_resume(self, make_executor, owner, agent):
        executor, bus = make_executor()
        execution = start(executor, owner, agent, tokens=20, delay_ms=5)
        await until(lambda: ("token", None) in bus.of(execution))

        await executor.control(execution, "pause")
        assert store.get_status(execution) == "paused"
        await executor.control(execution, "resume")
        await finished(executor, execution)

        events = bus.of(execution)
        paused = events.index(("status", "paused"))
        resumed = events.index(("status", "running"), paused)
        # the token in flight when pause came may still arrive; no other until resume
        assert len([e for e in events[paused:resumed] if e[0] == "token"]) <= 1
        assert events[-1] == ("complete", "completed")
        assert len([e for e in events if e[0] == "token"]) == 20

    async def test_a_paused_queued_execution_resumes_queued(self, make_executor, owner, agent):
        executor, bus = make_executor(max_concurrent=1)
        first = start(executor, owner, agent, tokens=50, delay_ms=20)
        second = start(executor, owner, agent, tokens=2)
        await until(lambda: ("status", "running") in bus.of(first))  # second waits its turn

        await executor.control(second, "pause")
        await executor.control(second, "resume")

        assert bus.of(second) == [("status", "queued"), ("status", "paused"), ("status", "queued")]
        await executor.control(first, "cancel")
        await finished(executor, second)
        assert bus.of(second)[-1] == ("complete", "completed")

    @pytest.mark.parametrize(
        ("setup", "action"),
        [
            ([], "resume"),  # running
            (["pause"], "pause"),
            (["cancel"], "cancel"),
            (["cancel"], "resume"),
            (["cancel"], "pause"),
        ],
    )
    async def test_an_illegal_transition_is_a_409_conflict(
        self, make_executor, owner, agent, setup: list[str], action: str
    ):
        executor, bus = make_executor()
        execution = start(executor, owner, agent, tokens=50, delay_ms=20)
        await until(lambda: ("status", "running") in bus.of(execution))
        for step in setup:
            await executor.control(execution, step)
        before = store.get_status(execution)

        with pytest.raises(Conflict) as raised:
            await executor.control(execution, action)

        assert (raised.value.status, raised.value.error) == (409, "invalid_transition")
        assert store.get_status(execution) == before
        if before != "cancelled":
            await executor.control(execution, "cancel")


class TestTerminalStates:
    async def test_a_completed_execution_ends_with_complete_and_its_result(
        self, make_executor, owner, agent
    ):
        executor, bus = make_executor()
        execution = start(executor, owner, agent, tokens=3)

        await finished(executor, execution)

        row = store.get_execution(execution, None)
        assert (row.status, row.stop_reason, row.error) == ("completed", "completed", None)
        assert row.completed_at is not None and row.completed_at.tzinfo is not None
        assert bus.of(execution)[0] == ("status", "queued")
        assert bus.of(execution)[-1] == ("complete", "completed")
        assert [e["type"] for e in bus.log].count("complete") == 1

    @pytest.mark.parametrize("mode", ["safe", "sandbox"])
    async def test_only_a_run_offered_tools_gets_a_workspace(
        self, make_executor, owner, settings, mode
    ):
        executor, _ = make_executor()
        workspace = settings.data_dir / "workspaces" / owner
        bare = agents.create_agent(owner, {"name": "bare"}).id
        tooled = agents.create_agent(owner, {"name": "tooled", "tools": ["read_file"]}).id

        for agent_id in (bare, tooled):
            body = {"task": "one two", "mode": mode, "inputs": {"echo": {"tokens": 2}}}
            execution = launch(executor, owner, agent_id, body, None).id
            await finished(executor, execution)
            assert store.get_execution(execution, None).status == "completed"
            assert workspace.is_dir() is (agent_id == tooled)

    async def test_a_provider_failure_ends_failed_with_an_error_event_before_complete(
        self, make_executor, owner, agent
    ):
        executor, bus = make_executor()
        execution = start(executor, owner, agent, fail="boom")

        await finished(executor, execution)

        row = store.get_execution(execution, None)
        assert (row.status, row.stop_reason, row.error) == ("failed", "provider_error", "boom")
        assert [t for t, _ in bus.of(execution)][-2:] == ["error", "complete"]

    async def test_terminal_executions_refuse_every_control(self, make_executor, owner, agent):
        executor, _ = make_executor()
        execution = start(executor, owner, agent, tokens=1)
        await finished(executor, execution)

        for action in ("cancel", "pause", "resume"):
            with pytest.raises(Conflict):
                await executor.control(execution, action)

    async def test_the_stored_events_match_the_published_ones_without_gaps(
        self, make_executor, owner, agent
    ):
        executor, bus = make_executor()
        execution = start(executor, owner, agent, tokens=5)

        await finished(executor, execution)

        published = [e for e in bus.log if e["execution_id"] == execution]
        stored = [row.data for row in store.events_after(execution, 0, 1000)]
        assert stored == published
        assert [e["seq"] for e in stored] == list(range(1, len(stored) + 1))


async def start_after_a_wait(executor: Executor, owner: str, agent: str, **echo: Any) -> str:
    """Launch a run while the only slot (``max_concurrent=1``) is taken, then free it: the
    run is created queued and starts through its gate."""
    blocker = start(executor, owner, agent, tokens=1000, delay_ms=10)
    execution = start(executor, owner, agent, **echo)
    assert store.get_status(execution) == "queued"
    await executor.control(blocker, "cancel")
    return execution


class TestStart:
    """A run's start ("running", ``started_at``) is stored with its step 0: in the
    transaction that creates it when it can start at once (SQLite), else in the one that
    stores its first checkpoint."""

    async def test_a_run_that_starts_at_once_is_created_running_with_its_step_0(
        self, make_executor, owner, agent, database
    ):
        executor, bus = make_executor()
        if not executor.db.inline:
            pytest.skip("runs start at launch on SQLite, where launching runs on the loop")
        statements: list[str] = []
        database.connection().set_trace_callback(statements.append)
        at_first_token = status_at_first_token(bus)
        try:
            execution = start(executor, owner, agent, tokens=3)
            created = statements[:]
            await finished(executor, execution)
        finally:
            database.connection().set_trace_callback(None)

        created = created[created.index("BEGIN") :]  # after reading the agent
        inserts = [s.split('"')[1] for s in created if s.startswith("INSERT")]
        assert (created[0], inserts, created[-1]) == (
            "BEGIN",
            ["execution", "row_count", "checkpoint"],
            "COMMIT",
        )
        assert "'running'" in next(s for s in created if s.startswith('INSERT INTO "execution"'))
        writes = [s.split()[:3] for s in statements if s.split()[0] in ("UPDATE", "BEGIN")]
        assert writes == [["BEGIN"], ["BEGIN"], ["UPDATE", '"execution"', "SET"]]  # its end
        assert [c.step for c in checkpoints.list_checkpoints(execution, 10, 0)[0]] == [0, 1]
        row = store.get_execution(execution, None)
        assert row.status == "completed" and row.started_at <= row.completed_at
        assert at_first_token == {execution: "running"}
        assert bus.of(execution)[:2] == [("status", "queued"), ("status", "running")]
        assert executor.slots.total == 0

    async def test_a_run_that_waited_stores_its_start_in_the_transaction_of_its_step_0(
        self, make_executor, owner, agent, monkeypatch
    ):
        executor, bus = make_executor(max_concurrent=1)
        written: list[tuple[str, dict[str, Any]]] = []
        update = store.update_execution
        monkeypatch.setattr(
            store,
            "update_execution",
            lambda i, **fields: (written.append((i, fields)), update(i, **fields)),
        )
        saved: list[tuple[str, int | None, dict[str, Any]]] = []  # with the fields it fenced
        save = checkpoints.save_step
        monkeypatch.setattr(
            checkpoints,
            "save_step",
            lambda e, step, state, **parts: (
                saved.append((e.id, step, parts.get("totals") or {})),
                save(e, step, state, **parts),
            )[1],
        )
        at_first_token = status_at_first_token(bus)
        execution = await start_after_a_wait(executor, owner, agent, tokens=3)
        await finished(executor, execution)

        own = [fields for i, fields in written if i == execution and "status" in fields]
        assert own == []  # no status write of its own
        steps = [(step, fenced) for i, step, fenced in saved if i == execution]
        assert steps[0][0] == 0 and steps[0][1]["status"] == "running"
        row = store.get_execution(execution, None)
        assert row.started_at == steps[0][1]["started_at"] <= row.completed_at
        assert at_first_token[execution] == "running"
        assert bus.of(execution)[:2] == [("status", "queued"), ("status", "running")]

    async def test_a_run_paused_before_its_task_runs_is_announced_as_it_is_stored(
        self, make_executor, owner, agent
    ):
        executor, bus = make_executor()
        if not executor.db.inline:
            pytest.skip("runs start at launch on SQLite, where launching runs on the loop")
        execution = start(executor, owner, agent, tokens=2)
        await executor.control(execution, "pause")  # before its task's first step
        await until(lambda: ("status", "paused") in bus.of(execution))
        assert store.get_status(execution) == "paused"
        assert executor.slots.total == 0

        await executor.control(execution, "resume")
        await finished(executor, execution)
        assert bus.of(execution) == [
            ("status", "queued"),
            ("status", "paused"),
            ("status", "running"),
            ("token", None),
            ("token", None),
            ("usage", None),
            ("complete", "completed"),
        ]

    async def test_a_run_cancelled_before_its_task_runs_ends_cancelled_and_frees_its_slot(
        self, make_executor, owner, agent
    ):
        executor, bus = make_executor(max_concurrent=1)
        execution = start(executor, owner, agent, tokens=2)
        await executor.control(execution, "cancel")  # on SQLite: before its task's first step
        await finished(executor, execution)

        assert store.get_status(execution) == "cancelled"
        assert bus.of(execution)[-1] == ("complete", "cancelled")
        assert executor.slots.total == 0
        after = start(executor, owner, agent, tokens=1)  # the slot is free again
        await finished(executor, after)
        assert store.get_status(after) == "completed"

    async def test_a_launch_that_fails_to_store_its_run_gives_its_slot_back(
        self, make_executor, owner, agent, monkeypatch
    ):
        executor, _ = make_executor(max_concurrent=1)

        def conflict(**fields):
            raise Conflict("An execution with this Idempotency-Key is being created.")

        monkeypatch.setattr(store, "create_execution", conflict)
        with pytest.raises(Conflict):
            start(executor, owner, agent, tokens=1)
        monkeypatch.undo()

        assert executor.slots.total == 0
        execution = start(executor, owner, agent, tokens=1)
        await finished(executor, execution)
        assert store.get_status(execution) == "completed"

    async def test_a_pause_while_step_0_is_written_is_not_overwritten_by_the_start(
        self, make_executor, owner, agent
    ):
        executor, bus = make_executor(max_concurrent=1)
        calls = executor.db
        step_0 = asyncio.Event()
        writing = asyncio.Event()

        async def slow_step_0(function, *args, **kwargs):  # as a slow PostgreSQL write
            if function is checkpoints.save_step and args[1] == 0:
                writing.set()
                await step_0.wait()
            return await calls(function, *args, **kwargs)

        slow_step_0.inline = calls.inline  # type: ignore[attr-defined]
        executor.db = slow_step_0  # type: ignore[assignment]
        execution = await start_after_a_wait(executor, owner, agent, tokens=3)
        await asyncio.wait_for(writing.wait(), 10)
        pausing = asyncio.create_task(executor.control(execution, "pause"))
        await asyncio.sleep(0.05)  # the pause is under way: it waits for step 0's write
        step_0.set()
        await pausing
        await until(lambda: checkpoints.latest(execution) is not None)  # step 0 is stored

        assert store.get_status(execution) == "paused"
        assert store.get_execution(execution, None).started_at is not None
        await executor.control(execution, "resume")
        await finished(executor, execution)
        assert bus.of(execution) == [
            ("status", "queued"),
            ("status", "running"),
            ("status", "paused"),
            ("status", "running"),
            *[("token", None)] * 3,
            ("usage", None),
            ("complete", "completed"),
        ]

    async def test_a_run_restored_from_a_checkpoint_is_stored_running_before_it_streams(
        self, make_executor, owner, agent
    ):
        executor, bus = make_executor()
        first = start(executor, owner, agent, tokens=2)
        await finished(executor, first)
        at_first_token = status_at_first_token(bus)

        restored = await restart(
            executor, owner, checkpoints.list_checkpoints(first, 1, 0)[0][0].id
        )
        await finished(executor, restored.id)

        assert at_first_token == {restored.id: "running"}
        row = store.get_execution(restored.id, None)
        assert row.status == "completed" and row.started_at is not None

    async def test_a_sandbox_run_is_stored_running_before_its_workspace_is_copied(
        self, make_executor, owner, monkeypatch
    ):
        executor, _ = make_executor()
        copying: list[str | None] = []
        copy = executor_module.sandbox_copy

        def recording_copy(workspace, quota_bytes=None):
            copying.append(store.get_status(execution))
            return copy(workspace, quota_bytes)

        monkeypatch.setattr(executor_module, "sandbox_copy", recording_copy)
        tooled = agents.create_agent(owner, {"name": "tooled", "tools": ["read_file"]}).id
        body = {"task": "one two", "mode": "sandbox", "inputs": {"echo": {"tokens": 2}}}
        execution = launch(executor, owner, tooled, body, None).id
        await finished(executor, execution)

        assert copying == ["running"]
        assert store.get_status(execution) == "completed"

    async def test_a_run_that_ends_before_its_step_0_stores_its_start_with_its_end(
        self, make_executor, owner
    ):
        executor, bus = make_executor()
        unset = agents.create_agent(owner, {"name": "gpt", "provider": "openai", "model": "x"})
        execution = launch(executor, owner, unset.id, {"task": "hi"}, None).id
        await finished(executor, execution)

        row = store.get_execution(execution, None)
        assert (row.status, row.stop_reason) == ("failed", "provider_not_configured")
        assert row.started_at is not None and row.started_at <= row.completed_at
        assert checkpoints.latest(execution) is None
        # never stored as running, so never announced as running
        assert bus.of(execution) == [("status", "queued"), ("error", None), ("complete", "failed")]

    async def test_a_start_written_late_never_revives_a_run_that_ended(self, execution_id):
        """A step 0 write that a cancel left running in its thread, committing after the
        run's end, is refused whole: the run stays ended, no checkpoint is added."""
        store.update_execution(execution_id, status="cancelled", completed_at=utcnow())
        row = store.get_execution(execution_id, None)

        with pytest.raises(store.LeaseLost):
            checkpoints.save_step(
                row, 0, {"messages": []}, totals={"status": "running", "started_at": utcnow()}
            )

        assert store.get_status(execution_id) == "cancelled"
        assert checkpoints.latest(execution_id) is None


def status_at_first_token(bus: RecordingBus) -> dict[str, str | None]:
    """Each execution's stored status as its first token is published (filled as runs go)."""
    seen: dict[str, str | None] = {}
    publish = bus.publish

    def publishing(execution_id: str, type_: str, **data: Any):
        if type_ == "token" and execution_id not in seen:
            seen[execution_id] = store.get_status(execution_id)
        return publish(execution_id, type_, **data)

    bus.publish = publishing  # type: ignore[method-assign]
    return seen


class TestHeartbeat:
    async def test_a_control_asked_through_the_database_is_obeyed_on_the_next_beat(
        self, make_executor, owner, agent
    ):
        executor, _ = make_executor(heartbeat_seconds=0.05)
        await executor.start()
        quiet = start(executor, owner, agent, tokens=400, delay_ms=10)
        asked = start(executor, owner, agent, tokens=400, delay_ms=10)
        await until(lambda: store.get_status(asked) == "running")

        store.update_execution(asked, control="cancel")  # as another worker's API call does
        await finished(executor, asked)

        assert store.get_status(asked) == "cancelled"
        assert store.touch_and_read_controls([asked, quiet]) == ({}, set())
        assert store.get_status(quiet) == "running"
        await executor.cancel(quiet)

    def test_the_beat_reads_only_the_controls_asked(self, owner, agent):
        ids = [queued_execution(owner, agent) for _ in range(3)]
        store.update_execution(ids[1], control="pause")

        assert store.touch_and_read_controls(ids) == ({ids[1]: "pause"}, set())
        assert store.touch_and_read_controls([]) == ({}, set())
