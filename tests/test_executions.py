"""Durable executions over HTTP: start, follow, control, budgets, tools, idempotency."""

from __future__ import annotations

import json
import time

import pytest

from storage.costs import CostRecord
from storage.executions import Execution
from tests.conftest import Account, assert_problem, events_of, execute, register, wait_for_status

TERMINAL = ("completed", "failed", "cancelled")


@pytest.fixture
def coder(client, alice: Account) -> str:
    reply = client.post("/api/v1/agents", json={"name": "coder"}, headers=alice.headers)
    assert reply.status_code == 201
    return "coder"


def slow(tokens: int = 200, delay_ms: int = 20) -> dict:
    return {"echo": {"tokens": tokens, "delay_ms": delay_ms}}


def wait_for_event(client, account: Account, execution_id: str, type_: str) -> None:
    """Poll the stored events until one of ``type_`` is there (up to a generous deadline)."""
    deadline = time.monotonic() + 10
    while not any(e["type"] == type_ for e in events_of(client, account, execution_id)):
        assert time.monotonic() < deadline, f"no {type_} event yet"
        time.sleep(0.02)


class TestExecuteAgent:
    def test_reply_has_the_seed_shape(self, client, alice: Account, coder: str):
        reply = client.post(
            f"/api/v1/agents/{coder}/execute",
            json={
                "task": "Review this code for bugs",
                "mode": "safe",
                "inputs": {"file": "api.py", "focus": "security"},
                "cost_limit": 5.0,
                "timeout": 300,
            },
            headers=alice.headers,
        )
        assert reply.status_code == 200
        body = reply.json()
        assert set(body) == {"execution_id", "status", "created_at"}
        assert body["execution_id"].startswith("exec_")
        assert body["status"] in ("queued", "running")

    def test_echo_execution_completes_with_result_usage_and_ordered_events(
        self, client, alice: Account, coder: str
    ):
        execution_id = execute(client, alice, coder, "hello there world")
        done = wait_for_status(client, alice, execution_id, TERMINAL)
        assert done["status"] == "completed"
        assert done["stop_reason"] == "completed"
        assert done["result"]["output"] == "hello there world"
        assert done["usage"]["completion_tokens"] == 3
        assert done["usage"]["total_tokens"] == done["usage"]["prompt_tokens"] + 3
        assert done["usage"]["cost_usd"] == 0
        assert done["usage"]["currency"] == "USD"
        assert done["started_at"] and done["completed_at"]
        assert done["usage"]["time_to_first_token_ms"] is not None
        events = events_of(client, alice, execution_id)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        kinds = [e["type"] for e in events]
        assert kinds == ["status", "status", "token", "token", "token", "usage", "complete"]
        assert [e["status"] for e in events[:2]] == ["queued", "running"]
        assert "".join(e["content"] for e in events if e["type"] == "token") == "hello there world"
        assert events[-1]["result"]["output"] == "hello there world"
        assert events[-1]["cost"] == 0

    def test_seed_client_polls_the_agents_executions_path(self, client, alice, coder):
        execution_id = execute(client, alice, coder)
        wait_for_status(client, alice, execution_id, TERMINAL)
        reply = client.get(f"/api/v1/agents/executions/{execution_id}", headers=alice.headers)
        assert reply.status_code == 200
        assert reply.json()["status"] == "completed"

    def test_unknown_agent_is_404(self, client, alice: Account):
        reply = client.post(
            "/api/v1/agents/ghost/execute", json={"task": "x"}, headers=alice.headers
        )
        assert_problem(reply, 404, "agent_not_found")

    def test_disabled_agent_is_409(self, client, alice: Account):
        client.post(
            "/api/v1/agents", json={"name": "off", "status": "disabled"}, headers=alice.headers
        )
        reply = client.post("/api/v1/agents/off/execute", json={"task": "x"}, headers=alice.headers)
        assert_problem(reply, 409, "agent_disabled")

    def test_bad_mode_and_missing_task_are_422(self, client, alice: Account, coder: str):
        reply = client.post(
            f"/api/v1/agents/{coder}/execute", json={"mode": "yolo"}, headers=alice.headers
        )
        body = assert_problem(reply, 422, "validation_error")
        assert set(body["details"]) == {"body.task", "body.mode"}

    def test_child_agent_runs_with_inherited_settings(self, client, alice: Account, coder: str):
        client.patch(
            "/api/v1/agents/coder", json={"instructions": "Be terse"}, headers=alice.headers
        )
        client.post(
            "/api/v1/agents", json={"name": "kid", "parent": "coder"}, headers=alice.headers
        )
        execution_id = execute(client, alice, "kid", "one two")
        done = wait_for_status(client, alice, execution_id, TERMINAL)
        assert done["agent_name"] == "kid"
        # instructions are sent as a system message: two more prompt words
        assert done["usage"]["prompt_tokens"] == 4


class TestIdempotency:
    def test_same_key_and_body_returns_the_same_execution(self, client, alice, coder):
        headers = {**alice.headers, "Idempotency-Key": "abc-123"}
        body = {"task": "only once"}
        first = client.post(f"/api/v1/agents/{coder}/execute", json=body, headers=headers)
        second = client.post(f"/api/v1/agents/{coder}/execute", json=body, headers=headers)
        assert first.status_code == second.status_code == 200
        assert first.json()["execution_id"] == second.json()["execution_id"]
        assert Execution.select().where(Execution.owner == alice.id).count() == 1

    def test_same_key_with_another_body_is_409(self, client, alice, coder):
        headers = {**alice.headers, "Idempotency-Key": "abc-123"}
        client.post(f"/api/v1/agents/{coder}/execute", json={"task": "a"}, headers=headers)
        reply = client.post(f"/api/v1/agents/{coder}/execute", json={"task": "b"}, headers=headers)
        assert_problem(reply, 409, "idempotency_key_reused")
        assert Execution.select().count() == 1

    def test_keys_are_per_user(self, client, alice, bob, coder):
        client.post("/api/v1/agents", json={"name": "coder"}, headers=bob.headers)
        for account in (alice, bob):
            headers = {**account.headers, "Idempotency-Key": "shared"}
            reply = client.post("/api/v1/agents/coder/execute", json={"task": "a"}, headers=headers)
            assert reply.status_code == 200
        assert Execution.select().count() == 2


class TestReadExecutions:
    def test_other_users_execution_is_404_and_not_listed(self, client, alice, bob, coder):
        execution_id = execute(client, alice, coder)
        assert_problem(
            client.get(f"/api/v1/executions/{execution_id}", headers=bob.headers),
            404,
            "execution_not_found",
        )
        assert_problem(
            client.get(f"/api/v1/executions/{execution_id}/events", headers=bob.headers),
            404,
            "execution_not_found",
        )
        assert_problem(
            client.post(f"/api/v1/executions/{execution_id}/cancel", headers=bob.headers),
            404,
            "execution_not_found",
        )
        listed = client.get("/api/v1/executions", headers=bob.headers).json()
        assert listed == {"executions": [], "total": 0, "limit": 100, "offset": 0, "next": None}

    def test_list_filters_by_agent_and_status_newest_first(self, client, alice, coder):
        client.post("/api/v1/agents", json={"name": "other"}, headers=alice.headers)
        ids = [execute(client, alice, coder, f"task {i}") for i in range(3)]
        other = execute(client, alice, "other")
        for execution_id in [*ids, other]:
            wait_for_status(client, alice, execution_id, TERMINAL)
        page = client.get("/api/v1/executions?agent_id=coder", headers=alice.headers).json()
        assert [e["id"] for e in page["executions"]] == ids[::-1]
        assert page["total"] == 3
        done = client.get("/api/v1/executions?status=completed&limit=2", headers=alice.headers)
        assert done.json()["total"] == 4
        assert len(done.json()["executions"]) == 2
        none = client.get("/api/v1/executions?status=running", headers=alice.headers)
        assert none.json()["total"] == 0

    def test_next_links_walk_executions_newest_first_keeping_filters(self, client, alice, coder):
        ids = [execute(client, alice, coder, f"task {i}") for i in range(5)]
        for execution_id in ids:
            wait_for_status(client, alice, execution_id, TERMINAL)
        seen, url = [], "/api/v1/executions?agent_id=coder&limit=2"
        while url:
            page = client.get(url, headers=alice.headers).json()
            assert page["total"] == 5
            seen += [e["id"] for e in page["executions"]]
            url = page["next"]
            assert url is None or "agent_id=coder" in url
        assert seen == ids[::-1]

    def test_events_page_after_and_limit(self, client, alice, coder):
        execution_id = execute(client, alice, coder, "a b c d e")
        wait_for_status(client, alice, execution_id, TERMINAL)
        reply = client.get(
            f"/api/v1/executions/{execution_id}/events?after=2&limit=3", headers=alice.headers
        ).json()
        assert [e["seq"] for e in reply["events"]] == [3, 4, 5]
        assert reply["after"] == 2 and reply["limit"] == 3
        assert reply["total"] == len(events_of(client, alice, execution_id))


class TestControl:
    def test_cancel_stops_tokens_promptly_and_records_no_later_cost(self, client, alice, coder):
        execution_id = execute(client, alice, coder, inputs=slow(tokens=500, delay_ms=20))
        wait_for_event(client, alice, execution_id, "token")
        reply = client.post(f"/api/v1/executions/{execution_id}/cancel", headers=alice.headers)
        assert reply.status_code == 200
        body = reply.json()
        # the reply already shows the end: cancel waited for the run to stop
        assert (body["status"], body["stop_reason"]) == ("cancelled", "cancelled")
        events = events_of(client, alice, execution_id)
        complete = events[-1]["seq"]
        assert all(e["seq"] < complete for e in events if e["type"] == "token")
        tokens_then = sum(e["type"] == "token" for e in events)
        costs_then = CostRecord.select().where(CostRecord.execution_id == execution_id).count()
        time.sleep(0.3)
        events_later = events_of(client, alice, execution_id)
        assert events_later == events
        assert events[-1]["type"] == "complete" and events[-1]["status"] == "cancelled"
        assert 0 < tokens_then < 500
        assert CostRecord.select().where(CostRecord.execution_id == execution_id).count() == (
            costs_then
        )
        # what was streamed before the cancel is accounted for, and kept as partial output
        assert body["usage"]["completion_tokens"] == tokens_then
        assert len(body["result"]["output"].split()) == tokens_then

    def test_cancel_a_queued_execution(self, make_client):
        client = make_client(max_concurrent_executions=1)
        alice = register(client, "alice")
        client.post("/api/v1/agents", json={"name": "coder"}, headers=alice.headers)
        busy = execute(client, alice, "coder", inputs=slow(tokens=100, delay_ms=20))
        waiting = execute(client, alice, "coder")
        assert (
            client.get(f"/api/v1/executions/{waiting}", headers=alice.headers).json()["status"]
            == "queued"
        )
        reply = client.post(f"/api/v1/executions/{waiting}/cancel", headers=alice.headers)
        assert reply.json()["status"] == "cancelled"
        assert reply.json()["started_at"] is None
        client.post(f"/api/v1/executions/{busy}/cancel", headers=alice.headers)

    def test_illegal_transitions_are_409(self, client, alice, coder):
        execution_id = execute(client, alice, coder)
        wait_for_status(client, alice, execution_id, TERMINAL)
        for action in ("cancel", "pause", "resume"):
            reply = client.post(
                f"/api/v1/executions/{execution_id}/{action}", headers=alice.headers
            )
            body = assert_problem(reply, 409, "invalid_transition")
            assert body["details"] == {"status": "completed"}

    def test_pause_holds_tokens_until_resume(self, client, alice, coder):
        execution_id = execute(client, alice, coder, inputs=slow(tokens=40, delay_ms=10))
        wait_for_status(client, alice, execution_id, ("running",))
        paused = client.post(f"/api/v1/executions/{execution_id}/pause", headers=alice.headers)
        assert paused.json()["status"] == "paused"
        time.sleep(0.3)  # time for tokens to flow, were the pause not holding them
        again = client.post(f"/api/v1/executions/{execution_id}/pause", headers=alice.headers)
        assert_problem(again, 409, "invalid_transition")
        resumed = client.post(f"/api/v1/executions/{execution_id}/resume", headers=alice.headers)
        assert resumed.json()["status"] == "running"
        done = wait_for_status(client, alice, execution_id, TERMINAL)
        assert done["status"] == "completed"
        assert done["usage"]["completion_tokens"] == 40
        events = events_of(client, alice, execution_id)
        statuses = [e["status"] for e in events if e["type"] == "status"]
        assert statuses == ["queued", "running", "paused", "running"]
        paused_at = next(i for i, e in enumerate(events) if e.get("status") == "paused")
        resumed_at = next(
            i for i, e in enumerate(events) if i > paused_at and e["type"] == "status"
        )
        # the token in flight when the pause came may still land; no other before resume
        assert sum(e["type"] == "token" for e in events[paused_at:resumed_at]) <= 1


class TestBudgets:
    def test_timeout_stops_the_run(self, client, alice, coder):
        execution_id = execute(client, alice, coder, inputs=slow(tokens=1000), timeout=1)
        done = wait_for_status(client, alice, execution_id, TERMINAL, timeout=30)
        assert (done["status"], done["stop_reason"]) == ("failed", "timeout")
        assert done["usage"]["completion_tokens"] < 1000  # stopped mid-reply
        assert "timeout" in done["error"]
        assert events_of(client, alice, execution_id)[-1]["stop_reason"] == "timeout"

    def test_cost_limit_stops_the_run_within_one_call(self, make_client, tmp_path):
        prices = tmp_path / "prices.json"
        # one output token costs $0.001 on this echo model
        prices.write_text(
            json.dumps({"echo": {"metered": {"input_per_million": 0, "output_per_million": 1000}}})
        )
        client = make_client(prices_file=prices)
        alice = register(client, "alice")
        client.post(
            "/api/v1/agents", json={"name": "meter", "model": "metered"}, headers=alice.headers
        )
        execution_id = execute(
            client, alice, "meter", inputs={"echo": {"tokens": 100}}, cost_limit=0.01
        )
        done = wait_for_status(client, alice, execution_id, TERMINAL)
        assert (done["status"], done["stop_reason"]) == ("failed", "cost_limit_exceeded")
        recorded = sum(
            c.cost_usd for c in CostRecord.select().where(CostRecord.execution_id == execution_id)
        )
        assert 0 < recorded <= 0.01 + 0.001
        assert done["usage"]["cost_usd"] == pytest.approx(recorded)
        assert done["usage"]["completion_tokens"] < 100

    def test_provider_without_key_fails_clearly(self, client, alice):
        client.post(
            "/api/v1/agents",
            json={"name": "gpt", "provider": "openai", "model": "gpt-4"},
            headers=alice.headers,
        )
        done = wait_for_status(client, alice, execute(client, alice, "gpt"), TERMINAL)
        assert (done["status"], done["stop_reason"]) == ("failed", "provider_not_configured")
        assert "CADRE_OPENAI_API_KEY" in done["error"]

    def test_provider_error_fails_the_execution(self, client, alice, coder):
        execution_id = execute(client, alice, coder, inputs={"echo": {"fail": "model exploded"}})
        done = wait_for_status(client, alice, execution_id, TERMINAL)
        assert (done["status"], done["stop_reason"], done["error"]) == (
            "failed",
            "provider_error",
            "model exploded",
        )
        kinds = [e["type"] for e in events_of(client, alice, execution_id)]
        assert kinds[-2:] == ["error", "complete"]


class TestConcurrency:
    def test_at_most_n_run_at_once_and_the_rest_wait_in_order(self, make_client):
        client = make_client(max_concurrent_executions=2)
        alice = register(client, "alice")
        client.post("/api/v1/agents", json={"name": "coder"}, headers=alice.headers)
        ids = [
            execute(client, alice, "coder", inputs=slow(tokens=5, delay_ms=30)) for _ in range(5)
        ]
        statuses = [
            client.get(f"/api/v1/executions/{i}", headers=alice.headers).json()["status"]
            for i in ids
        ]
        assert statuses.count("running") + statuses.count("queued") == 5
        assert statuses.count("running") <= 2
        finished = [wait_for_status(client, alice, i, TERMINAL) for i in ids]
        assert {f["status"] for f in finished} == {"completed"}
        # First in, first out. Runs that took free slots at the same moment may store their
        # start in either order (on PostgreSQL two queue workers claim them), so what holds
        # is: when a run starts, every run queued before it has started, but for at most
        # the other one holding a slot with it.
        starts = [f["started_at"] for f in finished]
        for i, start in enumerate(starts):
            assert sum(earlier <= start for earlier in starts[:i]) >= i - 1
