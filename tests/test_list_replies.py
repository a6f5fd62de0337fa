"""Lists written straight from rows (``cadre.replies``) say what the ``models_gen`` models
would: the same members, values and formats, for rows with every optional field set
and unset. Response validation (on in these tests) checks them against the OpenAPI
schema as well."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from models_gen.api import AgentList, CostList, CostRecord, ExecutionList
from storage import costs
from tests.conftest import execute, register, wait_for_status

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
