"""Checkpoints: one per step, written with what the step produced; runs continue from
them after a shutdown; session turns; restore, fork and rewind."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest

from cadre.engine.executor import Executor
from cadre.engine.launch import launch
from cadre.engine.restore import restart
from cadre.errors import Conflict
from storage import agents, checkpoints, costs, sessions
from storage import executions as store
from storage.executions import ExecutionEvent
from tests.engine.test_executor import finished, until

CALCULATOR = {"tool": "calculator", "args": {"expression": "2+3"}}


@pytest.fixture
def calculating(owner: str) -> str:
    return agents.create_agent(owner, {"name": "calc", "tools": ["calculator"]}).id


def start(executor: Executor, owner: str, agent: str, task: str = "one two", **echo: Any) -> str:
    return launch(executor, owner, agent, {"task": task, "inputs": {"echo": echo}}, None).id


def steps_of(execution_id: str) -> list[checkpoints.Checkpoint]:
    return checkpoints.list_checkpoints(execution_id, 1000, 0)[0]


def roles(checkpoint: checkpoints.Checkpoint) -> list[str]:
    return [m["role"] for m in checkpoint.state["messages"]]


def stored_events(execution_id: str, type_: str) -> list[dict]:
    return [
        e.data
        for e in ExecutionEvent.select().where(ExecutionEvent.execution == execution_id)
        if e.type == type_
    ]


def new_session(owner: str, tmp_path: Path, name: str = "chat") -> sessions.Session:
    return sessions.create_session(
        owner=owner,
        name=name,
        sdk_options={"allowed_tools": ["calculator"]},
        working_directory_path=str(tmp_path / "sessions" / name),
    )


def turn(
    executor: Executor, owner: str, agent: str, session_id: str, task: str, **echo: Any
) -> str:
    """A session's turn, as the sessions API creates one."""
    resolved = agents.resolve([agents.get_agent(agent, owner)])[0]
    execution = store.create_execution(
        owner=owner,
        agent_id=resolved.row["id"],
        agent_name=resolved.row["name"],
        task=task,
        mode="safe",
        inputs={"echo": echo},
        config=resolved.values,
        provider=resolved.values["provider"],
        model=resolved.values["model"],
        session_id=session_id,
    )
    executor.submit(execution)
    return execution.id


def texts(session_id: str) -> list[tuple[str, str]]:
    return [(m.message_type, m.content["content"]) for m in sessions.history(session_id)]


class TestOneCheckpointPerStep:
    async def test_turns_and_tool_results_each_store_the_state_to_continue_from(
        self, make_executor, owner, calculating
    ):
        executor, _ = make_executor()
        execution_id = start(executor, owner, calculating, "add them", tool_calls=[CALCULATOR])
        await finished(executor, execution_id)

        assert store.get_status(execution_id) == "completed"
        steps = steps_of(execution_id)
        assert [c.step for c in steps] == [0, 1, 2, 3]
        assert [roles(c) for c in steps] == [
            ["user"],
            ["user", "assistant"],
            ["user", "assistant", "tool"],
            ["user", "assistant", "tool", "assistant"],
        ]
        asked = steps[1].state
        assert asked["pending"] == [
            {"id": "call_1", "tool": "calculator", "args": CALCULATOR["args"]}
        ]
        assert asked["messages"][1]["tool_calls"] == asked["pending"]
        assert asked["tally"]["steps"] == 1 and asked["tally"]["prompt_tokens"] == 2
        answered = steps[2].state
        assert answered["pending"] == []
        assert answered["messages"][2] == {
            "role": "tool",
            "content": '{"result": 5}',
            "tool_call_id": "call_1",
            "name": "calculator",
        }
        assert answered["tally"]["tool_calls"] == 1
        final = steps[3].state
        assert final["messages"][3]["content"].endswith("add them")
        assert final["tally"]["steps"] == 3
        # one cost record per provider call, each stored with its step
        assert costs.count_records(execution_id) == 2

    async def test_the_last_step_is_written_in_the_transaction_of_the_runs_end(
        self, make_executor, owner, calculating, monkeypatch
    ):
        executor, _ = make_executor()
        write = store.append_events
        seen: list[tuple[list[int], int]] = []  # (steps stored, cost records) as it ends

        def ending(rows: list[Any], progress: Any = None, writes: Any = None) -> set[str]:
            if any(row[2] == "complete" for row in rows):
                execution_id = rows[-1][0]
                assert writes and list(writes) == [execution_id]
                seen.append(
                    ([c.step for c in steps_of(execution_id)], costs.count_records(execution_id))
                )
            return write(rows, progress, writes)

        monkeypatch.setattr(store, "append_events", ending)
        execution_id = start(executor, owner, calculating, "add them", tool_calls=[CALCULATOR])
        await finished(executor, execution_id)

        # The turn asking for the tool and the tool's result were stored on their own, each
        # before the next step ran; the answer's step and its cost only with the end.
        assert seen == [([0, 1, 2], 1)]
        assert [c.step for c in steps_of(execution_id)] == [0, 1, 2, 3]
        assert costs.count_records(execution_id) == 2
        row = store.get_execution(execution_id, None)
        assert (row.status, row.steps, row.prompt_tokens) == (
            "completed",
            3,
            costs.billed(execution_id)[0],
        )

    async def test_an_instructed_agent_starts_from_its_system_message(self, make_executor, owner):
        agent = agents.create_agent(owner, {"name": "told", "instructions": "Be brief."}).id
        executor, _ = make_executor()
        execution_id = start(executor, owner, agent)
        await finished(executor, execution_id)
        first = steps_of(execution_id)[0].state["messages"]
        assert first == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "one two"},
        ]


class TestResume:
    async def test_after_a_shutdown_the_run_continues_from_its_checkpoint(
        self, make_executor, owner, calculating
    ):
        first, _ = make_executor()
        execution_id = start(
            first,
            owner,
            calculating,
            "slow answer",
            tool_calls=[CALCULATOR],
            tokens=40,
            delay_ms=20,
        )
        # the tool ran (step 2) and the second call streams: stop the server then
        await until(lambda: len(steps_of(execution_id)) == 3 and store.last_seq(execution_id) > 8)
        await first.stop()
        assert store.get_status(execution_id) == "running"  # resumable, not interrupted
        assert store.get_execution(execution_id, None).heartbeat_at is None

        second, _ = make_executor()
        await second.start()
        await until(lambda: execution_id in second.handles)
        await finished(second, execution_id)

        done = store.get_execution(execution_id, None)
        assert done.status == "completed"
        assert done.result["output"].startswith("Tool calculator returned")
        assert len(stored_events(execution_id, "tool_result")) == 1  # not run again
        # the first call, the second cut short by the shutdown, the second again
        assert costs.count_records(execution_id) == 3
        prompt, completion, _ = costs.billed(execution_id)
        assert (done.prompt_tokens, done.completion_tokens) == (prompt, completion)
        assert [
            e["seq"] for e in (r.data for r in store.events_after(execution_id, 0, 10_000))
        ] == (list(range(1, store.last_seq(execution_id) + 1)))

    async def test_a_paused_run_stays_paused_across_a_restart_then_resumes(
        self, make_executor, owner, agent
    ):
        first, _ = make_executor()
        execution_id = start(first, owner, agent, tokens=30, delay_ms=10)
        await until(lambda: store.last_seq(execution_id) > 4)
        await first.control(execution_id, "pause")
        await first.stop()
        assert store.get_status(execution_id) == "paused"

        second, bus = make_executor()
        await second.start()
        assert execution_id in second.handles
        await asyncio.sleep(0.1)
        assert store.get_status(execution_id) == "paused"
        assert bus.of(execution_id) == []  # nothing until resumed
        await second.control(execution_id, "resume")
        await finished(second, execution_id)
        assert store.get_status(execution_id) == "completed"


class TestSessionTurns:
    async def test_a_turn_sees_the_whole_history_and_the_session_keeps_it(
        self, make_executor, owner, agent, tmp_path
    ):
        executor, _ = make_executor()
        session = new_session(owner, tmp_path)
        first = turn(executor, owner, agent, session.id, "hello there")
        assert await executor.wait_finished(first) == "completed"
        second = turn(executor, owner, agent, session.id, "again")
        assert await executor.wait_finished(second) == "completed"

        assert texts(session.id) == [
            ("user", "hello there"),
            ("assistant", "hello there"),
            ("user", "again"),
            ("assistant", "again"),
        ]
        start_of_second = steps_of(second)[0].state
        assert [m["content"] for m in start_of_second["messages"]] == [
            "hello there",
            "hello there",
            "again",
        ]
        assert start_of_second["session_seq"] == 3
        row = sessions.get_session(session.id, owner)
        assert row.status == "completed" and row.current_run_id is None
        assert row.started_at is not None and row.last_activity_at is not None
        assert row.total_messages == 4
        done = [store.get_execution(i, None) for i in (first, second)]
        assert row.api_input_tokens == sum(e.prompt_tokens for e in done)
        assert row.api_output_tokens == sum(e.completion_tokens for e in done) == 3
        assert (tmp_path / "sessions" / "chat").is_dir()  # its working directory

    async def test_tool_calls_are_recorded_with_the_session(
        self, make_executor, owner, calculating, tmp_path
    ):
        executor, _ = make_executor()
        session = new_session(owner, tmp_path)
        run = turn(executor, owner, calculating, session.id, "add", tool_calls=[CALCULATOR])
        assert await executor.wait_finished(run) == "completed"
        calls = list(
            sessions.SessionToolCall.select().where(sessions.SessionToolCall.session == session.id)
        )
        assert [(c.tool_name, c.tool_input, c.tool_output, c.status) for c in calls] == [
            ("calculator", {"expression": "2+3"}, {"result": 5}, "success")
        ]
        assert [m.message_type for m in sessions.history(session.id)] == [
            "user",
            "assistant",
            "tool",
            "assistant",
        ]
        assert sessions.get_session(session.id, owner).total_tool_calls == 1

    async def test_queued_turns_run_one_at_a_time_in_order(
        self, make_executor, owner, agent, tmp_path
    ):
        executor, bus = make_executor()
        session = new_session(owner, tmp_path)
        runs = [
            turn(executor, owner, agent, session.id, f"turn {n}", tokens=5, delay_ms=5)
            for n in range(3)
        ]
        for run in runs:
            assert await executor.wait_finished(run) == "completed"

        started = [e["execution_id"] for e in bus.log if e.get("status") == "running"]
        assert started == runs
        for earlier, later in itertools.pairwise(runs):
            ended = next(
                i
                for i, e in enumerate(bus.log)
                if e["execution_id"] == earlier and e["type"] == "complete"
            )
            began = next(
                i
                for i, e in enumerate(bus.log)
                if e["execution_id"] == later and e.get("status") == "running"
            )
            assert ended < began
        assert [t for kind, t in texts(session.id) if kind == "user"] == [
            "turn 0",
            "turn 1",
            "turn 2",
        ]

    async def test_turns_on_two_workers_still_take_the_session_in_turn(
        self, make_executor, owner, agent, tmp_path
    ):
        first, _ = make_executor(heartbeat_seconds=0.1)
        second, _ = make_executor(heartbeat_seconds=0.1)
        session = new_session(owner, tmp_path)
        earlier = turn(first, owner, agent, session.id, "earlier", tokens=20, delay_ms=10)
        later = turn(second, owner, agent, session.id, "later")
        assert await second.wait_finished(later) == "completed"

        assert store.get_status(earlier) == "completed"  # it was over before the later began
        ended = store.get_execution(earlier, None).completed_at
        assert store.get_execution(later, None).started_at >= ended
        assert [t for kind, t in texts(session.id) if kind == "user"] == ["earlier", "later"]

    async def test_a_cancelled_turn_keeps_what_the_model_had_said(
        self, make_executor, owner, agent, tmp_path
    ):
        executor, _ = make_executor()
        session = new_session(owner, tmp_path)
        run = turn(executor, owner, agent, session.id, "many words", tokens=500, delay_ms=5)
        await until(lambda: store.last_seq(run) > 6)
        assert await executor.cancel(run) == "cancelled"

        kinds = texts(session.id)
        assert kinds[0] == ("user", "many words")
        assert kinds[1][0] == "assistant"
        assert 0 < len(kinds[1][1].split()) < 500
        assert sessions.get_session(session.id, owner).current_run_id is None


class TestRestoreAndFork:
    async def _two_turns(self, executor, owner, agent, tmp_path) -> tuple[sessions.Session, str]:
        session = new_session(owner, tmp_path)
        (tmp_path / "sessions" / "chat").mkdir(parents=True)
        (tmp_path / "sessions" / "chat" / "notes.txt").write_text("kept")
        first = turn(executor, owner, agent, session.id, "first question")
        await executor.wait_finished(first)
        second = turn(executor, owner, agent, session.id, "second question")
        await executor.wait_finished(second)
        return session, second

    async def test_restore_branches_a_new_session_with_the_history_up_to_there(
        self, make_executor, owner, agent, tmp_path
    ):
        executor, _ = make_executor()
        session, second = await self._two_turns(executor, owner, agent, tmp_path)
        start_of_second = steps_of(second)[0]

        restored = await restart(
            executor, owner, start_of_second.id, modified_query="another question"
        )
        assert await executor.wait_finished(restored.id) == "completed"

        assert restored.restored_from == start_of_second.id
        branched = sessions.get_session(restored.session_id, owner)
        assert (branched.parent_session_id, branched.is_fork, branched.mode) == (
            session.id,
            True,
            "forked",
        )
        assert texts(branched.id) == [
            ("user", "first question"),
            ("assistant", "first question"),
            ("user", "another question"),
            ("assistant", "another question"),
        ]
        assert texts(session.id)[2:] == [
            ("user", "second question"),
            ("assistant", "second question"),
        ]  # the original is untouched
        assert Path(branched.working_directory_path, "notes.txt").read_text() == "kept"
        assert store.get_execution(restored.id, None).task == "another question"

    async def test_rewinding_the_same_session_discards_what_came_after(
        self, make_executor, owner, agent, tmp_path
    ):
        executor, _ = make_executor()
        session, second = await self._two_turns(executor, owner, agent, tmp_path)
        restored = await restart(
            executor, owner, steps_of(second)[0].id, create_new_run=False, modified_query="redo"
        )
        assert restored.session_id == session.id
        assert await executor.wait_finished(restored.id) == "completed"
        assert texts(session.id) == [
            ("user", "first question"),
            ("assistant", "first question"),
            ("user", "redo"),
            ("assistant", "redo"),
        ]
        assert sessions.get_session(session.id, owner).total_messages == 4

    async def test_rewinding_a_busy_session_is_a_conflict(
        self, make_executor, owner, agent, tmp_path
    ):
        executor, _ = make_executor()
        session, second = await self._two_turns(executor, owner, agent, tmp_path)
        busy = turn(executor, owner, agent, session.id, "long", tokens=500, delay_ms=10)
        await until(lambda: store.get_status(busy) == "running")
        with pytest.raises(Conflict) as caught:
            await restart(executor, owner, steps_of(second)[0].id, create_new_run=False)
        assert caught.value.error == "session_busy"
        await executor.cancel(busy)

    async def test_rewinding_an_archived_session_is_a_conflict(
        self, make_executor, owner, agent, tmp_path
    ):
        executor, _ = make_executor()
        session, second = await self._two_turns(executor, owner, agent, tmp_path)
        sessions.Session.update(status="archived").where(
            sessions.Session.id == session.id
        ).execute()
        with pytest.raises(Conflict) as caught:
            await restart(executor, owner, steps_of(second)[0].id, create_new_run=False)
        assert caught.value.error == "session_archived"
        branched = await restart(executor, owner, steps_of(second)[0].id)  # a new session is fine
        assert await executor.wait_finished(branched.id) == "completed"

    async def test_fork_replaces_the_system_prompt_from_there_on(
        self, make_executor, owner, agent, tmp_path
    ):
        executor, _ = make_executor()
        _, second = await self._two_turns(executor, owner, agent, tmp_path)
        answered = steps_of(second)[-1]
        forked = await restart(executor, owner, answered.id, system_prompt="Be terse.")
        assert await executor.wait_finished(forked.id) == "completed"
        start = steps_of(forked.id)[0].state["messages"]
        assert start[0] == {"role": "system", "content": "Be terse."}
        assert [m["content"] for m in start[1:]] == [
            m["content"] for m in answered.state["messages"]
        ]
        branched = sessions.get_session(forked.session_id, owner)
        assert branched.sdk_options["system_prompt"] == "Be terse."
        assert store.get_execution(forked.id, None).config["instructions"] == "Be terse."
        assert len(texts(branched.id)) == 4  # the history up to the checkpoint, nothing more

    async def test_a_run_outside_sessions_restores_as_a_new_run(
        self, make_executor, owner, calculating
    ):
        executor, _ = make_executor()
        original = start(executor, owner, calculating, "add", tool_calls=[CALCULATOR])
        await finished(executor, original)
        asked = steps_of(original)[1]  # the tool call still to run
        restored = await restart(executor, owner, asked.id)
        assert await executor.wait_finished(restored.id) == "completed"
        assert restored.session_id is None
        assert len(stored_events(restored.id, "tool_result")) == 1  # the pending call ran
        assert costs.count_records(restored.id) == 1  # only the answer was asked again
        with pytest.raises(Conflict):
            await restart(executor, owner, asked.id, create_new_run=False)


class TestApproval:
    async def test_a_run_waits_in_its_checkpoint_until_a_decision(self, make_executor, owner):
        agent = agents.create_agent(owner, {"name": "w", "tools": ["filesystem_write"]})
        resolved = agents.resolve([agent])[0]
        write = {"tool": "filesystem_write", "args": {"path": "a.txt", "content": "x"}}
        execution = store.create_execution(
            owner=owner,
            agent_id=agent.id,
            agent_name=agent.name,
            task="write",
            mode="full",
            inputs={"echo": {"tool_calls": [write]}},
            config={**resolved.values, "permission_mode": "default"},
            provider="echo",
            model=resolved.values["model"],
        )
        executor, bus = make_executor()
        executor.submit(execution)
        assert await executor.wait_finished(execution.id) == "requires_action"
        assert execution.id not in executor.handles  # held by no worker
        waiting = checkpoints.latest(execution.id)
        assert waiting.state["awaiting"] == {
            "call_id": "call_1",
            **{k: write[k] for k in ("tool", "args")},
        }
        assert waiting.state["pending"][0]["id"] == "call_1"
        assert bus.of(execution.id)[-2:] == [
            ("approval_required", None),
            ("status", "requires_action"),
        ]

        await executor.approve(execution.id, "call_1", "deny", "not now")
        assert checkpoints.latest(execution.id).state["awaiting"]["decision"] == "deny"
        with pytest.raises(Conflict):
            await executor.approve(execution.id, "call_1", "allow", None)  # decided already
        assert await executor.wait_finished(execution.id) == "completed"
        done = store.get_execution(execution.id, None)
        assert done.result["output"].startswith(
            "Tool filesystem_write returned error: The user denied this tool call: not now"
        )
        assert costs.count_records(execution.id) == 2  # the asking call was not made again
