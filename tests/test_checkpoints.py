"""Checkpoints over HTTP: a run's steps, one checkpoint, restore and fork (seed 004's
requests as written under /api/v1). Sessions' histories are proven in
tests/engine/test_checkpoints.py."""

from __future__ import annotations

import pytest

from tests.conftest import Account, assert_problem, events_of, execute, wait_for_status

TERMINAL = ("completed", "failed", "cancelled")
CALCULATOR = {"tool": "calculator", "args": {"expression": "6*7"}}


@pytest.fixture
def calc(client, alice: Account) -> str:
    body = {"name": "calc", "tools": ["calculator"], "instructions": "Add things."}
    assert client.post("/api/v1/agents", json=body, headers=alice.headers).status_code == 201
    return "calc"


@pytest.fixture
def finished_run(client, alice, calc) -> str:
    run_id = execute(
        client,
        alice,
        calc,
        "what is six times seven",
        inputs={"echo": {"tool_calls": [CALCULATOR]}},
    )
    assert wait_for_status(client, alice, run_id, TERMINAL)["status"] == "completed"
    return run_id


def checkpoints_of(client, account: Account, run_id: str, **query) -> dict:
    reply = client.get(
        f"/api/v1/checkpoints/runs/{run_id}/checkpoints", params=query, headers=account.headers
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


class TestListRunCheckpoints:
    def test_one_per_step_oldest_first(self, client, alice, finished_run):
        page = checkpoints_of(client, alice, finished_run)
        assert page["total"] == 4 and (page["limit"], page["offset"]) == (100, 0)
        steps = page["checkpoints"]
        assert [c["step"] for c in steps] == [0, 1, 2, 3]
        assert all(c["run_id"] == finished_run and c["session_id"] is None for c in steps)
        assert [len(c["state"]["messages"]) for c in steps] == [2, 3, 4, 5]
        assert steps[1]["state"]["pending"] == [{"id": "call_1", **CALCULATOR}]
        assert steps[2]["state"]["messages"][-1]["content"] == '{"result": 42}'

    def test_paginated(self, client, alice, finished_run):
        page = checkpoints_of(client, alice, finished_run, limit=2, offset=1)
        assert [c["step"] for c in page["checkpoints"]] == [1, 2]
        assert page["total"] == 4

    def test_another_users_run_is_404(self, client, alice, bob, finished_run):
        reply = client.get(
            f"/api/v1/checkpoints/runs/{finished_run}/checkpoints", headers=bob.headers
        )
        assert_problem(reply, 404, "execution_not_found")


class TestGetCheckpoint:
    def test_seed_shape(self, client, alice, finished_run):
        first = checkpoints_of(client, alice, finished_run)["checkpoints"][0]
        reply = client.get(f"/api/v1/checkpoints/{first['id']}", headers=alice.headers)
        assert reply.status_code == 200
        body = reply.json()
        assert set(body) == {"id", "run_id", "session_id", "step", "created_at", "state"}
        assert body["state"]["messages"] == [
            {"role": "system", "content": "Add things."},
            {"role": "user", "content": "what is six times seven"},
        ]
        assert body["state"]["tally"]["steps"] == 0

    def test_another_users_checkpoint_is_404(self, client, alice, bob, finished_run):
        first = checkpoints_of(client, alice, finished_run)["checkpoints"][0]
        assert_problem(
            client.get(f"/api/v1/checkpoints/{first['id']}", headers=bob.headers),
            404,
            "checkpoint_not_found",
        )
        for action, body in (("restore", {}), ("fork", {})):
            reply = client.post(
                f"/api/v1/checkpoints/{first['id']}/{action}", json=body, headers=bob.headers
            )
            assert_problem(reply, 404, "checkpoint_not_found")


class TestRestoreCheckpoint:
    def test_seed_example_starts_a_new_run_with_the_query_replaced(
        self, client, alice, finished_run
    ):
        first = checkpoints_of(client, alice, finished_run)["checkpoints"][0]
        reply = client.post(
            f"/api/v1/checkpoints/{first['id']}/restore",
            json={"create_new_run": True, "modifications": {"modified_query": "New query"}},
            headers=alice.headers,
        )
        assert reply.status_code == 201, reply.text
        body = reply.json()
        assert set(body) == {"run_id", "session_id", "checkpoint_id", "status"}
        assert body["checkpoint_id"] == first["id"] and body["session_id"] is None
        assert body["run_id"] != finished_run
        done = wait_for_status(client, alice, body["run_id"], TERMINAL)
        assert done["status"] == "completed"
        assert done["restored_from"] == first["id"]
        assert done["task"] == "New query"
        # the tool is asked for again (the echo agent's steering came along)
        assert done["result"]["output"] == 'Tool calculator returned {"result": 42}. New query'
        restored = checkpoints_of(client, alice, body["run_id"])["checkpoints"]
        assert restored[0]["state"]["messages"] == [
            {"role": "system", "content": "Add things."},
            {"role": "user", "content": "New query"},
        ]
        assert [e["type"] for e in events_of(client, alice, body["run_id"])][-1] == "complete"

    def test_from_a_pending_tool_call_the_new_run_goes_on_from_there(
        self, client, alice, finished_run
    ):
        asked = checkpoints_of(client, alice, finished_run)["checkpoints"][1]
        reply = client.post(
            f"/api/v1/checkpoints/{asked['id']}/restore", json={}, headers=alice.headers
        )
        assert reply.status_code == 201
        done = wait_for_status(client, alice, reply.json()["run_id"], TERMINAL)
        assert (
            done["result"]["output"]
            == 'Tool calculator returned {"result": 42}. what is six times seven'
        )
        assert (
            done["steps"] == 2
        )  # the tool, the answer: the call that asked for it is not repeated

    def test_rewinding_a_run_outside_any_session_is_409(self, client, alice, finished_run):
        first = checkpoints_of(client, alice, finished_run)["checkpoints"][0]
        reply = client.post(
            f"/api/v1/checkpoints/{first['id']}/restore",
            json={"create_new_run": False},
            headers=alice.headers,
        )
        assert_problem(reply, 409, "not_a_session_run")

    def test_bounds_are_422(self, client, alice, finished_run):
        first = checkpoints_of(client, alice, finished_run)["checkpoints"][0]
        for body in (
            {"modifications": {"modified_query": ""}},
            {"modifications": {"modified_query": "x" * 65537}},
            {"modifications": {"other": 1}},
            {"create_new_run": "yes"},
        ):
            reply = client.post(
                f"/api/v1/checkpoints/{first['id']}/restore", json=body, headers=alice.headers
            )
            assert_problem(reply, 422, "validation_error")


class TestForkCheckpoint:
    def test_seed_example_replaces_the_system_prompt(self, client, alice, finished_run):
        last = checkpoints_of(client, alice, finished_run)["checkpoints"][-1]
        reply = client.post(
            f"/api/v1/checkpoints/{last['id']}/fork",
            json={"modifications": {"system_prompt": "New prompt"}},
            headers=alice.headers,
        )
        assert reply.status_code == 201, reply.text
        run_id = reply.json()["run_id"]
        assert wait_for_status(client, alice, run_id, TERMINAL)["status"] == "completed"
        start = checkpoints_of(client, alice, run_id)["checkpoints"][0]["state"]["messages"]
        assert start[0] == {"role": "system", "content": "New prompt"}
        assert start[1:] == last["state"]["messages"][1:]

    def test_bounds_are_422(self, client, alice, finished_run):
        last = checkpoints_of(client, alice, finished_run)["checkpoints"][-1]
        reply = client.post(
            f"/api/v1/checkpoints/{last['id']}/fork",
            json={"modifications": {"system_prompt": "x" * 65537}},
            headers=alice.headers,
        )
        assert_problem(reply, 422, "validation_error")
