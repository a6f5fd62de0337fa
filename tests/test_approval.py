"""Tool approval: a run whose permission mode asks before a tool stops ``requires_action``
until ``POST /api/v1/runs/{run_id}/approve`` decides (the restart case is in
tests/test_recovery.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from storage import agents
from storage import executions as store
from tests.conftest import Account, assert_problem, events_of, wait_for_status

TERMINAL = ("completed", "failed", "cancelled")
WRITE = {"tool": "filesystem_write", "args": {"path": "note.txt", "content": "approved"}}


def permissioned_run(
    account: Account, permission_mode: str, task: str = "write it", tool_calls=(WRITE,)
) -> str:
    """A run with a ``permission_mode``, as a session's turn freezes it into its config.
    Created here and held by no worker, the server takes it over within a beat."""
    agent = agents.get_agent("writer", account.id)
    resolved = agents.resolve([agent])[0]
    execution = store.create_execution(
        owner=account.id,
        agent_id=agent.id,
        agent_name=agent.name,
        task=task,
        mode="full",
        inputs={"echo": {"tool_calls": list(tool_calls)}},
        config={**resolved.values, "permission_mode": permission_mode},
        provider=resolved.values["provider"],
        model=resolved.values["model"],
    )
    store.update_execution(execution.id, heartbeat_at=None)
    return execution.id


@pytest.fixture
def writer(client, alice: Account) -> str:
    body = {"name": "writer", "tools": ["filesystem_write", "calculator"]}
    assert client.post("/api/v1/agents", json=body, headers=alice.headers).status_code == 201
    return "writer"


@pytest.fixture
def note(settings, alice: Account) -> Path:
    return Path(settings.data_dir) / "workspaces" / alice.id / "note.txt"


def awaiting(client, account: Account, run_id: str) -> dict:
    wait_for_status(client, account, run_id, ("requires_action",), timeout=15)
    return next(e for e in events_of(client, account, run_id) if e["type"] == "approval_required")


def approve(client, account: Account, run_id: str, **body):
    return client.post(f"/api/v1/runs/{run_id}/approve", json=body, headers=account.headers)


class TestApprovalRequired:
    def test_the_run_stops_before_the_tool_and_says_which_call(self, client, alice, writer, note):
        run_id = permissioned_run(alice, "default")
        event = awaiting(client, alice, run_id)
        assert (event["call_id"], event["tool"], event["args"]) == (
            "call_1",
            "filesystem_write",
            WRITE["args"],
        )
        kinds = [e["type"] for e in events_of(client, alice, run_id)]
        assert kinds[-2:] == ["approval_required", "status"]
        assert "tool_call" not in kinds and "complete" not in kinds
        assert not note.exists()
        time.sleep(0.3)
        assert store.get_status(run_id) == "requires_action"  # no worker picks it up meanwhile

    def test_read_tools_run_without_asking(self, client, alice, writer):
        calc = {"tool": "calculator", "args": {"expression": "1+1"}}
        run_id = permissioned_run(alice, "default", tool_calls=(calc,))
        done = wait_for_status(client, alice, run_id, TERMINAL, timeout=15)
        assert done["status"] == "completed"
        assert done["result"]["output"].startswith('Tool calculator returned {"result": 2}')

    def test_plan_mode_refuses_a_write_without_stopping(self, client, alice, writer, note):
        run_id = permissioned_run(alice, "plan")
        done = wait_for_status(client, alice, run_id, TERMINAL, timeout=15)
        assert done["status"] == "completed"
        result = next(e for e in events_of(client, alice, run_id) if e["type"] == "tool_result")
        assert result["code"] == "tool_not_permitted"
        assert "not permitted in permission mode 'plan'" in done["result"]["output"]
        assert not note.exists()

    def test_accept_edits_lets_a_write_through(self, client, alice, writer, note):
        run_id = permissioned_run(alice, "acceptEdits")
        assert wait_for_status(client, alice, run_id, TERMINAL, timeout=15)["status"] == "completed"
        assert note.read_text() == "approved"

    def test_bypass_permissions_runs_it(self, client, alice, writer, note):
        run_id = permissioned_run(alice, "bypassPermissions")
        assert wait_for_status(client, alice, run_id, TERMINAL, timeout=15)["status"] == "completed"
        assert note.read_text() == "approved"


class TestApproveRun:
    def test_allow_runs_the_tool_and_the_run_completes(self, client, alice, writer, note):
        run_id = permissioned_run(alice, "default")
        event = awaiting(client, alice, run_id)
        reply = approve(client, alice, run_id, tool_call_id=event["call_id"], decision="allow")
        assert reply.status_code == 200, reply.text
        assert reply.json()["status"] in ("queued", "running", "completed")
        done = wait_for_status(client, alice, run_id, TERMINAL)
        assert done["status"] == "completed"
        assert note.read_text() == "approved"
        result = next(e for e in events_of(client, alice, run_id) if e["type"] == "tool_result")
        assert result["result"]["path"] == "note.txt"
        assert done["result"]["tool_calls"] == 1

    def test_deny_tells_the_model_why(self, client, alice, writer, note):
        run_id = permissioned_run(alice, "default")
        event = awaiting(client, alice, run_id)
        reply = approve(
            client,
            alice,
            run_id,
            tool_call_id=event["call_id"],
            decision="deny",
            reason="no writes",
        )
        assert reply.status_code == 200
        done = wait_for_status(client, alice, run_id, TERMINAL)
        assert done["status"] == "completed"
        assert not note.exists()
        result = next(e for e in events_of(client, alice, run_id) if e["type"] == "tool_result")
        assert (result["code"], result["error"]) == (
            "tool_denied",
            "The user denied this tool call: no writes",
        )
        assert done["result"]["output"].startswith(
            "Tool filesystem_write returned error: The user denied this tool call: no writes"
        )

    def test_not_awaiting_that_call_is_409(self, client, alice, writer):
        run_id = permissioned_run(alice, "default")
        awaiting(client, alice, run_id)
        body = assert_problem(
            approve(client, alice, run_id, tool_call_id="call_9", decision="allow"),
            409,
            "not_awaiting_approval",
        )
        assert body["details"]["awaiting"] == "call_1"
        assert (
            approve(client, alice, run_id, tool_call_id="call_1", decision="allow").status_code
            == 200
        )
        again = approve(client, alice, run_id, tool_call_id="call_1", decision="allow")
        assert_problem(again, 409, "not_awaiting_approval")
        wait_for_status(client, alice, run_id, TERMINAL)
        assert_problem(approve(client, alice, run_id, tool_call_id="call_1", decision="deny"), 409)

    def test_another_users_run_is_404_and_a_bad_decision_422(self, client, alice, bob, writer):
        run_id = permissioned_run(alice, "default")
        awaiting(client, alice, run_id)
        assert_problem(
            approve(client, bob, run_id, tool_call_id="call_1", decision="allow"),
            404,
            "execution_not_found",
        )
        assert_problem(
            approve(client, alice, run_id, tool_call_id="call_1", decision="maybe"),
            422,
            "validation_error",
        )
        assert_problem(approve(client, alice, run_id, decision="allow"), 422, "validation_error")
        assert store.get_status(run_id) == "requires_action"

    def test_a_run_awaiting_approval_can_be_cancelled(self, client, alice, writer, note):
        run_id = permissioned_run(alice, "default")
        awaiting(client, alice, run_id)
        reply = client.post(f"/api/v1/runs/{run_id}/cancel", headers=alice.headers)
        assert reply.status_code == 200
        assert (reply.json()["status"], reply.json()["stop_reason"]) == ("cancelled", "cancelled")
        assert events_of(client, alice, run_id)[-1]["type"] == "complete"
        assert_problem(approve(client, alice, run_id, tool_call_id="call_1", decision="allow"), 409)
        assert not note.exists()

    def test_a_disabled_accounts_waiting_run_is_cancelled(self, client, alice, writer):
        from storage.users import User

        run_id = permissioned_run(alice, "default")
        awaiting(client, alice, run_id)
        User.update(is_active=False).where(User.id == alice.id).execute()
        deadline = time.monotonic() + 10
        while store.get_status(run_id) == "requires_action" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.get_status(run_id) == "cancelled"
