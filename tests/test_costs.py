"""Cost records per provider call, their listing, totals and summaries."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from storage import costs
from tests.conftest import assert_problem, execute, register, wait_for_status

TERMINAL = ("completed", "failed", "cancelled")


@pytest.fixture
def priced(make_client, tmp_path):
    prices = tmp_path / "prices.json"
    prices.write_text(
        json.dumps({"echo": {"metered": {"input_per_million": 1000, "output_per_million": 2000}}})
    )
    client = make_client(prices_file=prices)
    alice = register(client, "alice")
    for name in ("coder", "reviewer"):
        client.post(
            "/api/v1/agents", json={"name": name, "model": "metered"}, headers=alice.headers
        )
    return client, alice


def run(client, account, agent, task):
    return wait_for_status(client, account, execute(client, account, agent, task), TERMINAL)


def test_each_provider_call_writes_a_priced_record(priced):
    client, alice = priced
    done = run(client, alice, "coder", "one two three")
    listing = client.get("/api/v1/costs", headers=alice.headers).json()
    assert len(listing["costs"]) == 1
    record = listing["costs"][0]
    assert record["id"].startswith("cost_")
    assert record["execution_id"] == done["id"]
    assert (record["provider"], record["model"], record["priced"]) == ("echo", "metered", True)
    assert record["completion_tokens"] == 3
    # 3 prompt tokens at $1000/M and 3 completion tokens at $2000/M
    assert record["cost_usd"] == pytest.approx(0.009)
    assert listing["total_cost"] == pytest.approx(0.009)
    assert done["usage"]["cost_usd"] == pytest.approx(0.009)


def test_the_offline_echo_provider_is_priced_and_free(client, alice):
    client.post("/api/v1/agents", json={"name": "free"}, headers=alice.headers)
    run(client, alice, "free", "hi")
    record = client.get("/api/v1/costs", headers=alice.headers).json()["costs"][0]
    assert (record["cost_usd"], record["priced"]) == (0, True)


def test_filters_limit_and_total_over_all_matching(priced):
    client, alice = priced
    run(client, alice, "coder", "a")
    run(client, alice, "reviewer", "a b")
    run(client, alice, "reviewer", "a b c")
    by_agent = client.get("/api/v1/costs?agent_id=reviewer", headers=alice.headers).json()
    assert {c["agent_name"] for c in by_agent["costs"]} == {"reviewer"}
    one = client.get("/api/v1/costs?limit=1", headers=alice.headers).json()
    everything = client.get("/api/v1/costs", headers=alice.headers).json()
    assert len(one["costs"]) == 1
    assert one["total_cost"] == pytest.approx(everything["total_cost"])
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    later = client.get("/api/v1/costs", params={"since": future}, headers=alice.headers).json()
    assert later == {"costs": [], "total_cost": 0}


def test_total_cost_is_the_sum_of_the_owners_records_and_outlives_their_session(priced):
    """The unfiltered total is a sum kept with each record: it matches the records,
    follows every bill, and keeps a deleted session's costs (as the records stay)."""
    client, alice = priced
    bob = register(client, "bob")
    client.post("/api/v1/agents", json={"name": "coder", "model": "metered"}, headers=bob.headers)
    run(client, alice, "coder", "a")
    run(client, bob, "coder", "a b c d")
    reviewer = client.get("/api/v1/agents/reviewer", headers=alice.headers).json()["id"]
    session = client.post(
        "/api/v1/sessions", json={"name": "s", "agent_id": reviewer}, headers=alice.headers
    ).json()
    turn = client.post(
        f"/api/v1/sessions/{session['id']}/query", json={"message": "a b"}, headers=alice.headers
    )
    assert turn.status_code == 200, turn.text
    assert (
        client.delete(f"/api/v1/sessions/{session['id']}", headers=alice.headers).status_code == 204
    )

    for account in (alice, bob):
        listing = client.get("/api/v1/costs?limit=1", headers=account.headers).json()
        stored = costs.CostRecord.select().where(costs.CostRecord.owner == account.id)
        assert len(listing["costs"]) == 1 and stored.count() == (2 if account is alice else 1)
        assert listing["total_cost"] == pytest.approx(sum(r.cost_usd for r in stored), abs=1e-12)
        assert listing["total_cost"] > 0


def test_bad_since_is_422(client, alice):
    reply = client.get("/api/v1/costs?since=yesterday", headers=alice.headers)
    assert_problem(reply, 422, "validation_error")


def test_summary_groups_by_agent_provider_and_model(priced):
    client, alice = priced
    a = run(client, alice, "coder", "a")["usage"]["cost_usd"]
    b = run(client, alice, "reviewer", "a b")["usage"]["cost_usd"]
    summary = client.get("/api/v1/costs/summary?period=week", headers=alice.headers).json()
    assert summary["period"] == "week"
    assert summary["total_cost"] == pytest.approx(a + b)
    assert summary["by_agent"] == {"coder": pytest.approx(a), "reviewer": pytest.approx(b)}
    assert summary["by_provider"] == {"echo": pytest.approx(a + b)}
    assert summary["by_model"] == {"metered": pytest.approx(a + b)}


def test_users_see_only_their_costs_and_admins_may_see_all(priced):
    client, alice = priced
    run(client, alice, "coder", "a")
    bob = register(client, "bob")
    assert client.get("/api/v1/costs", headers=bob.headers).json() == {"costs": [], "total_cost": 0}
    assert_problem(client.get("/api/v1/costs?all=true", headers=bob.headers), 403, "admin_required")
    root = register(client, "root", role="admin")
    everyone = client.get("/api/v1/costs?all=true", headers=root.headers).json()
    assert len(everyone["costs"]) == 1
    summary = client.get("/api/v1/costs/summary?all=true", headers=root.headers).json()
    assert summary["by_agent"].keys() == {"coder"}
