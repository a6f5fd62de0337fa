"""Lists written straight from rows (``cadre.replies``) say what the ``models_gen`` models
would: the same members, values and formats, for rows with every optional field set
and unset. Response validation (on in these tests) checks them against the OpenAPI
schema as well."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from cadre import conversations
from models_gen.api import (
    AgentList,
    CostList,
    CostRecord,
    ExecutionList,
    JobList,
    SessionList,
    SessionMessageList,
    SessionTemplateList,
    SessionToolCallList,
    WorkerList,
)
from storage import costs, sessions
from tests.conftest import execute, register, wait_for_status
from tests.jobs_helpers import TERMINAL as JOB_TERMINAL
from tests.jobs_helpers import submit, wait_for_job

TERMINAL = ("completed", "failed", "cancelled")


def assert_as_the_model_writes(reply, model: type[BaseModel]) -> dict:
    """The reply is ``model``'s, member for member: validating it and writing it back
    changes nothing (a missing member, an extra one or another format would)."""
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/json"
    written = model.model_validate_json(reply.content).model_dump(mode="json")
    assert reply.json() == written
    return written


@pytest.fixture
def owner(make_client, tmp_path):
    prices = tmp_path / "prices.json"
    prices.write_text(
        json.dumps({"echo": {"metered": {"input_per_million": 1000, "output_per_million": 2000}}})
    )
    client = make_client(prices_file=prices)
    return client, register(client, "alice")


def test_agents_list_items_are_the_single_agent_replies(owner):
    client, alice = owner
    full = {
        "name": "base",
        "provider": "echo",
        "model": "metered",
        "temperature": 0.25,
        "instructions": "Be brief.",
        "tools": ["filesystem_read", "calculator"],
        "tags": ["production", "team:a"],
    }
    for body in (full, {"name": "child", "parent": "base"}, {"name": "bare"}):
        created = client.post("/api/v1/agents", json=body, headers=alice.headers)
        assert created.status_code == 201, created.text
    disabled = client.patch(
        "/api/v1/agents/bare", json={"status": "disabled"}, headers=alice.headers
    )
    assert disabled.status_code == 200, disabled.text

    listing = assert_as_the_model_writes(
        client.get("/api/v1/agents?limit=2", headers=alice.headers), AgentList
    )
    listing["agents"] += client.get(listing["next"], headers=alice.headers).json()["agents"]
    by_name = {agent["name"]: agent for agent in listing["agents"]}
    assert by_name["child"]["inherited"] == [
        "provider",
        "model",
        "temperature",
        "instructions",
        "tools",
    ]
    assert (by_name["child"]["parent"], by_name["bare"]["parent_id"]) == ("base", None)
    assert by_name["bare"]["status"] == "disabled"
    for agent in listing["agents"]:
        single = client.get(f"/api/v1/agents/{agent['id']}", headers=alice.headers).json()
        assert agent == single


def test_executions_list_items_are_the_single_execution_replies(owner):
    client, alice = owner
    client.post("/api/v1/agents", json={"name": "coder"}, headers=alice.headers)
    plain = execute(client, alice, "coder")
    bounded = execute(
        client,
        alice,
        "coder",
        inputs={"file": "api.py", "n": [1, 2.5]},
        cost_limit=5.0,
        timeout=300,
    )
    failing = execute(client, alice, "coder", inputs={"echo": {"fail": "boom"}})
    for execution_id in (plain, bounded, failing):
        wait_for_status(client, alice, execution_id, TERMINAL)

    listing = assert_as_the_model_writes(
        client.get("/api/v1/executions", headers=alice.headers), ExecutionList
    )
    assert [e["id"] for e in listing["executions"]] == [failing, bounded, plain]
    for execution in listing["executions"]:
        single = client.get(f"/api/v1/executions/{execution['id']}", headers=alice.headers)
        assert execution == single.json()
    assert listing["executions"][1]["cost_limit"] == 5.0
    assert listing["executions"][2]["cost_limit"] is None


def test_costs_list_items_are_the_cost_record_model(owner):
    client, alice = owner
    client.post("/api/v1/agents", json={"name": "coder", "model": "metered"}, headers=alice.headers)
    client.post("/api/v1/agents", json={"name": "free"}, headers=alice.headers)
    for agent in ("coder", "free"):
        wait_for_status(client, alice, execute(client, alice, agent, "one two"), TERMINAL)

    listing = assert_as_the_model_writes(
        client.get("/api/v1/costs", headers=alice.headers), CostList
    )
    stored = costs.CostRecord.select().order_by(costs.CostRecord.timestamp.desc())
    expected = [
        CostRecord.model_validate(row, from_attributes=True).model_dump(mode="json")
        for row in stored
    ]
    assert listing["costs"] == expected
    assert {record["priced"] for record in listing["costs"]} == {True}


def test_session_lists_items_are_the_single_replies_and_stored_rows(owner):
    client, alice = owner
    options = {"allowed_tools": ["calculator"], "permission_mode": "bypassPermissions"}
    full = client.post(
        "/api/v1/sessions",
        json={"name": "full", "sdk_options": {**options, "model": "echo", "system_prompt": "Hi"}},
        headers=alice.headers,
    ).json()
    client.post("/api/v1/sessions", json={"name": "bare"}, headers=alice.headers)
    calls = [{"tool": "calculator", "args": {"expression": "6*7"}}]
    turn = client.post(
        f"/api/v1/sessions/{full['id']}/query",
        json={"message": "compute", "inputs": {"echo": {"tool_calls": calls}}},
        headers=alice.headers,
    )
    assert turn.status_code == 200, turn.text

    listing = assert_as_the_model_writes(
        client.get("/api/v1/sessions", headers=alice.headers), SessionList
    )
    assert [s["name"] for s in listing["sessions"]] == ["bare", "full"]
    for session in listing["sessions"]:
        single = client.get(f"/api/v1/sessions/{session['id']}", headers=alice.headers)
        assert session == single.json()

    base = f"/api/v1/sessions/{full['id']}"
    messages = assert_as_the_model_writes(
        client.get(f"{base}/messages", headers=alice.headers), SessionMessageList
    )
    stored = sessions.history(full["id"])
    assert messages["messages"] == [
        conversations.message_reply(m).model_dump(mode="json") for m in stored
    ]
    assert {m["model"] for m in messages["messages"]} >= {None}
    tool_calls = assert_as_the_model_writes(
        client.get(f"{base}/tool-calls", headers=alice.headers), SessionToolCallList
    )
    stored_calls = sessions.SessionToolCall.select().where(
        sessions.SessionToolCall.session == full["id"]
    )
    assert tool_calls["tool_calls"] == [
        conversations.tool_call_reply(c).model_dump(mode="json") for c in stored_calls
    ]
    assert len(tool_calls["tool_calls"]) == 1


def test_session_template_list_items_are_the_single_template_replies(owner):
    client, alice = owner
    bob = register(client, "bob")
    for account, body in (
        (alice, {"name": "bare"}),
        (
            bob,
            {
                "name": "shared",
                "description": "For all",
                "category": "review",
                "is_public": True,
                "default_mode": "interactive",
                "sdk_options": {"allowed_tools": ["Read"], "permission_mode": "plan"},
            },
        ),
    ):
        created = client.post("/api/v1/session-templates", json=body, headers=account.headers)
        assert created.status_code == 201, created.text

    listing = assert_as_the_model_writes(
        client.get("/api/v1/session-templates", headers=alice.headers), SessionTemplateList
    )
    assert {t["name"] for t in listing["templates"]} == {"bare", "shared"}
    for template in listing["templates"]:
        single = client.get(f"/api/v1/session-templates/{template['id']}", headers=alice.headers)
        assert template == single.json()


def test_job_and_worker_list_items_are_the_single_replies(owner):
    client, alice = owner
    root = submit(client, alice, worker_count=2)
    submit(client, alice, depth=1, parent_job_id=root["id"], inputs={"file": "a.py"})
    wait_for_job(client, alice, root["id"], JOB_TERMINAL)

    listing = assert_as_the_model_writes(client.get("/api/v1/jobs", headers=alice.headers), JobList)
    assert len(listing["jobs"]) == 2
    for job in listing["jobs"]:
        detail = client.get(f"/api/v1/jobs/{job['id']}", headers=alice.headers).json()
        assert job == {key: detail[key] for key in job}
    workers = assert_as_the_model_writes(
        client.get("/api/v1/supervisor/workers", headers=alice.headers), WorkerList
    )
    assert len(workers["workers"]) >= 2
    for worker in workers["workers"]:
        single = client.get(f"/api/v1/supervisor/workers/{worker['id']}", headers=alice.headers)
        assert worker == single.json()
