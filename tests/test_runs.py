"""Runs: seed 004's names for the execution operations (one implementation)."""

from __future__ import annotations

import time

import pytest

from tests.conftest import Account, assert_problem, execute, wait_for_status

TERMINAL = ("completed", "failed", "cancelled")


@pytest.fixture
def echoer(client, alice: Account) -> str:
    assert (
        client.post("/api/v1/agents", json={"name": "echoer"}, headers=alice.headers).status_code
        == 201
    )
    return "echoer"


def slow(tokens: int = 400, delay_ms: int = 10) -> dict:
    return {"echo": {"tokens": tokens, "delay_ms": delay_ms}}


class TestGetRun:
    def test_a_run_is_the_execution_of_that_id(self, client, alice, echoer):
        run_id = execute(client, alice, echoer, "hello run")
        wait_for_status(client, alice, run_id, TERMINAL)
        run = client.get(f"/api/v1/runs/{run_id}", headers=alice.headers)
        execution = client.get(f"/api/v1/executions/{run_id}", headers=alice.headers)
        assert run.status_code == 200
        assert run.json() == execution.json()
        assert run.json()["result"]["output"] == "hello run"
        assert run.json()["session_id"] is None and run.json()["restored_from"] is None

    def test_another_users_run_is_404(self, client, alice, bob, echoer):
        run_id = execute(client, alice, echoer)
        assert_problem(
            client.get(f"/api/v1/runs/{run_id}", headers=bob.headers), 404, "execution_not_found"
        )
        assert_problem(client.get("/api/v1/runs/exec_nope", headers=alice.headers), 404)


class TestControl:
    """Seed 004: `POST /api/runs/{run_id}/pause|resume|cancel`, here under /api/v1."""

    def test_seed_pause_resume_cancel_as_written(self, client, alice, echoer):
        run_id = execute(client, alice, echoer, inputs=slow())
        wait_for_status(client, alice, run_id, ("running",))

        paused = client.post(f"/api/v1/runs/{run_id}/pause", headers=alice.headers)
        assert paused.status_code == 200 and paused.json()["status"] == "paused"
        resumed = client.post(f"/api/v1/runs/{run_id}/resume", headers=alice.headers)
        assert resumed.status_code == 200 and resumed.json()["status"] in ("running", "queued")
        cancelled = client.post(f"/api/v1/runs/{run_id}/cancel", headers=alice.headers)
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "cancelled"
        assert cancelled.json()["stop_reason"] == "cancelled"

    def test_a_paused_run_emits_nothing_until_resumed(self, client, alice, echoer):
        run_id = execute(client, alice, echoer, inputs=slow(40, 10))
        wait_for_status(client, alice, run_id, ("running",))
        client.post(f"/api/v1/runs/{run_id}/pause", headers=alice.headers)
        seen = client.get(f"/api/v1/executions/{run_id}/events", headers=alice.headers).json()[
            "total"
        ]
        time.sleep(0.3)
        later = client.get(f"/api/v1/executions/{run_id}/events", headers=alice.headers).json()[
            "total"
        ]
        assert later <= seen + 1  # the token in flight when pause came, no more
        client.post(f"/api/v1/runs/{run_id}/resume", headers=alice.headers)
        done = wait_for_status(client, alice, run_id, TERMINAL)
        assert done["status"] == "completed"
        assert len(done["result"]["output"].split()) == 40

    def test_invalid_transitions_are_409(self, client, alice, echoer):
        run_id = execute(client, alice, echoer)
        wait_for_status(client, alice, run_id, TERMINAL)
        for action in ("pause", "resume", "cancel"):
            reply = client.post(f"/api/v1/runs/{run_id}/{action}", headers=alice.headers)
            assert_problem(reply, 409, "invalid_transition")

    def test_another_users_run_is_404(self, client, alice, bob, echoer):
        run_id = execute(client, alice, echoer, inputs=slow())
        for action in ("pause", "resume", "cancel"):
            reply = client.post(f"/api/v1/runs/{run_id}/{action}", headers=bob.headers)
            assert_problem(reply, 404, "execution_not_found")
        client.post(f"/api/v1/runs/{run_id}/cancel", headers=alice.headers)
