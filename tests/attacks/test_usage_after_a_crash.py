"""Hardening: tokens streamed before a ``kill -9`` were never billed (usage recorded as 0).

A run's usage is stored with its events as they stream; after a crash, recovery
bills the call that was cut short with what it had consumed, and only that call.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.attacks.conftest import Attacked, serve

# A prompt token costs 0.001 USD, a completion token 0.002 USD.
PRICES = {"echo": {"metered": {"input_per_million": 1000, "output_per_million": 2000}}}
TASK = "one two three four"  # 4 prompt tokens
SLOW = {"tokens": 400, "delay_ms": 100}


def stored_tokens(server: Attacked, headers: dict[str, str], execution_id: str) -> int:
    reply = httpx.get(
        f"{server.url}/api/v1/executions/{execution_id}/events?limit=1000", headers=headers
    )
    assert reply.status_code == 200, reply.text
    return sum(1 for e in reply.json()["events"] if e["type"] == "token")


def cost_records(server: Attacked, headers: dict[str, str], execution_id: str) -> list[dict]:
    reply = httpx.get(f"{server.url}/api/v1/costs?limit=1000", headers=headers)
    return [r for r in reply.json()["costs"] if r["execution_id"] == execution_id]


def start(server: Attacked, headers: dict[str, str], echo: dict) -> str:
    reply = httpx.post(
        f"{server.url}/api/v1/agents/meter/execute",
        json={"task": TASK, "mode": "full", "inputs": {"echo": echo}},
        headers=headers,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["execution_id"]


def test_tokens_streamed_before_a_kill_are_billed_once(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("crashed")
    prices = root / "prices.json"
    prices.write_text(json.dumps(PRICES))
    with serve(root, CADRE_PRICES_FILE=str(prices)) as first:
        headers = first.headers("victim")
        reply = httpx.post(
            f"{first.url}/api/v1/agents",
            json={"name": "meter", "model": "metered", "tools": ["calculator"]},
            headers=headers,
        )
        assert reply.status_code == 201, reply.text
        plain = start(first, headers, SLOW)
        # A first call (two tool calls) ends and is billed; the second streams when killed.
        calls = [{"tool": "calculator", "args": {"expression": "6*7"}}] * 2
        tooled = start(first, headers, {**SLOW, "tool_calls": calls})
        deadline = time.monotonic() + 60
        while min(stored_tokens(first, headers, e) for e in (plain, tooled)) < 5:
            assert time.monotonic() < deadline, "no tokens streamed"
            time.sleep(0.05)
        assert first.process is not None
        first.process.kill()  # SIGKILL: no shutdown, no final accounting
        first.process.wait()

    with serve(root, CADRE_PRICES_FILE=str(prices)) as second:
        headers = second.headers("victim")
        for execution_id in (plain, tooled):
            deadline = time.monotonic() + 60
            while True:
                done = httpx.get(
                    f"{second.url}/api/v1/executions/{execution_id}", headers=headers
                ).json()
                if done["status"] in ("completed", "failed", "cancelled"):
                    break
                assert time.monotonic() < deadline, done["status"]
                time.sleep(0.1)
            assert (done["status"], done["stop_reason"]) == ("failed", "interrupted")
            tokens = stored_tokens(second, headers, execution_id)
            assert tokens >= 5
            usage = done["usage"]
            records = cost_records(second, headers, execution_id)
            assert sum(r["cost_usd"] for r in records) == pytest.approx(usage["cost_usd"])
            assert sum(r["completion_tokens"] for r in records) == usage["completion_tokens"]
            assert sum(r["prompt_tokens"] for r in records) == usage["prompt_tokens"]
            if execution_id == plain:
                assert len(records) == 1  # the one call, billed once, by recovery
                assert records[0]["prompt_tokens"] == 4
                assert records[0]["completion_tokens"] >= tokens
                assert usage["cost_usd"] == pytest.approx(
                    0.004 + 0.002 * usage["completion_tokens"]
                )
            else:
                first_call, cut_short = sorted(records, key=lambda r: r["timestamp"])
                assert (first_call["prompt_tokens"], first_call["completion_tokens"]) == (4, 2)
                assert cut_short["completion_tokens"] >= tokens
                assert cut_short["prompt_tokens"] > 4  # heard the tool results

        # Recovery runs on every heartbeat: the records stay as they are.
        time.sleep(1.5)
        for execution_id in (plain, tooled):
            assert len(cost_records(second, headers, execution_id)) == (
                1 if execution_id == plain else 2
            )
