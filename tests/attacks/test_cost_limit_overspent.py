"""Hardening: a run with ``cost_limit: 60`` completed at 100.1 USD.

The echo model ``metered`` gets a price, so budgets bite: a prompt token costs
0.001 USD and a completion token 0.002 USD. The echo provider counts one token
per word, the prompt as the words of the task.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.attacks.conftest import Attacked, serve

PRICES = {"echo": {"metered": {"input_per_million": 1000, "output_per_million": 2000}}}
TASK = "one two three four"  # 4 prompt tokens: 0.004 USD


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attacked]:
    root = tmp_path_factory.mktemp("budget")
    prices = root / "prices.json"
    prices.write_text(json.dumps(PRICES))
    with serve(root, CADRE_PRICES_FILE=str(prices)) as attacked:
        yield attacked


@pytest.fixture(scope="module")
def headers(server: Attacked) -> dict[str, str]:
    headers = server.headers("spender")
    reply = httpx.post(
        f"{server.url}/api/v1/agents", json={"name": "meter", "model": "metered"}, headers=headers
    )
    assert reply.status_code == 201, reply.text
    return headers


def run(server: Attacked, headers: dict[str, str], **body: object) -> dict:
    reply = httpx.post(
        f"{server.url}/api/v1/agents/meter/execute", json={"task": TASK, **body}, headers=headers
    )
    assert reply.status_code == 200, reply.text
    execution_id = reply.json()["execution_id"]
    deadline = time.monotonic() + 30
    while True:
        state = httpx.get(f"{server.url}/api/v1/executions/{execution_id}", headers=headers)
        done = state.json()
        if done["status"] in ("completed", "failed", "cancelled"):
            return done
        assert time.monotonic() < deadline, done["status"]
        time.sleep(0.05)


def events(server: Attacked, headers: dict[str, str], execution_id: str) -> list[dict]:
    reply = httpx.get(
        f"{server.url}/api/v1/executions/{execution_id}/events?limit=1000", headers=headers
    )
    return reply.json()["events"]


def recorded(server: Attacked, headers: dict[str, str], execution_id: str) -> float:
    reply = httpx.get(f"{server.url}/api/v1/costs?limit=1000", headers=headers)
    body = reply.json()
    rows = body["costs"]
    return round(sum(r["cost_usd"] for r in rows if r["execution_id"] == execution_id), 10)


@pytest.mark.parametrize(
    ("limit", "tokens_paid"),
    [
        (0.0, 0),  # not even the prompt: no call is made
        (0.005, 0),  # the prompt, but not one completion token
        (0.006, 1),
        (0.0105, 3),  # 0.004 + 3 x 0.002 = 0.010; a fourth token would pass the limit
        (0.104, 50),  # exactly the limit
    ],
)
def test_the_budget_holds_to_the_token(server, headers, limit, tokens_paid):
    done = run(server, headers, cost_limit=limit, inputs={"echo": {"tokens": 500}})
    assert (done["status"], done["stop_reason"]) == ("failed", "cost_limit_exceeded")
    assert done["usage"]["cost_usd"] <= limit
    assert done["usage"]["completion_tokens"] == tokens_paid
    assert recorded(server, headers, done["id"]) == done["usage"]["cost_usd"]
    tokens = [e for e in events(server, headers, done["id"]) if e["type"] == "token"]
    assert len(tokens) == tokens_paid  # nothing was published that was not paid for


def test_a_run_the_budget_affords_completes_within_it(server, headers):
    # 0.0165 pays for the prompt and 6 tokens: a 5-token answer is not cut short.
    # (One using every token the budget allowed could have been: that ends over budget.)
    done = run(server, headers, cost_limit=0.0165, inputs={"echo": {"tokens": 5}})
    assert (done["status"], done["stop_reason"]) == ("completed", "completed")
    assert done["usage"]["cost_usd"] == pytest.approx(0.004 + 5 * 0.002)


def test_the_budget_spans_every_call_of_a_run(server, headers):
    # First call: two tool calls (prompt 4 + completion 2 tokens); then an answer that
    # hears the tool results in its prompt: the budget runs out inside the second call.
    calls = [{"tool": "calculator", "args": {"expression": "1+1"}}] * 2
    done = run(
        server,
        headers,
        cost_limit=0.05,
        inputs={"echo": {"tokens": 500, "tool_calls": calls}},
    )
    assert (done["status"], done["stop_reason"]) == ("failed", "cost_limit_exceeded")
    assert 0.008 < done["usage"]["cost_usd"] <= 0.05
    assert recorded(server, headers, done["id"]) == done["usage"]["cost_usd"]


def test_a_long_reply_under_a_big_limit_never_completes_above_it(server, headers):
    for limit in (0.5, 1.0, 60.0):
        done = run(server, headers, cost_limit=limit, inputs={"echo": {"tokens": 4096}})
        assert done["usage"]["cost_usd"] <= limit
        if done["status"] == "completed":
            assert done["usage"]["completion_tokens"] == 4096
        else:
            assert done["stop_reason"] == "cost_limit_exceeded"
