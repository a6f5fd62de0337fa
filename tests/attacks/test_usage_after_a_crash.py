"""Hardening: tokens streamed before a ``kill -9`` were never billed (usage recorded as 0).

A run's usage is stored with its events as they stream; after a crash, recovery
bills the call that was cut short with what it had consumed, and only that call, then
the run continues from its last checkpoint (here it is cancelled once it has).
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
        streamed = {e: stored_tokens(first, headers, e) for e in (plain, tooled)}
        assert first.process is not None
        first.process.kill()  # SIGKILL: no shutdown, no final accounting
        first.process.wait()

    with serve(root, CADRE_PRICES_FILE=str(prices)) as second:
        headers = second.headers("victim")
        for execution_id in (plain, tooled):
            billed_before = 1 if execution_id == plain else 2
            deadline = time.monotonic() + 60
            while len(cost_records(second, headers, execution_id)) < billed_before:
                assert time.monotonic() < deadline, "the cut-short call was never billed"
                time.sleep(0.1)
            reply = httpx.post(
                f"{second.url}/api/v1/executions/{execution_id}/cancel", headers=headers
            )
            assert reply.status_code == 200, reply.text
            done = httpx.get(f"{second.url}/api/v1/executions/{execution_id}", headers=headers)
            done = done.json()
            assert (done["status"], done["stop_reason"]) == ("cancelled", "cancelled")
            usage = done["usage"]
            records = sorted(
                cost_records(second, headers, execution_id), key=lambda r: r["timestamp"]
            )
            assert sum(r["cost_usd"] for r in records) == pytest.approx(usage["cost_usd"])
            assert sum(r["completion_tokens"] for r in records) == usage["completion_tokens"]
            assert sum(r["prompt_tokens"] for r in records) == usage["prompt_tokens"]
            # then, at most: the call the resumed run was making when cancelled
            assert len(records) in (billed_before, billed_before + 1)
            if execution_id == plain:
                cut_short = records[0]  # the one call, billed once, by recovery
                assert cut_short["prompt_tokens"] == 4
                assert cut_short["cost_usd"] == pytest.approx(
                    0.004 + 0.002 * cut_short["completion_tokens"]
                )
            else:
                first_call, cut_short = records[:2]
                assert (first_call["prompt_tokens"], first_call["completion_tokens"]) == (4, 2)
                assert cut_short["prompt_tokens"] > 4  # heard the tool results
            assert cut_short["completion_tokens"] >= streamed[execution_id]
        counts = {e: len(cost_records(second, headers, e)) for e in (plain, tooled)}

        # Recovery runs on every heartbeat: the records stay as they are.
        time.sleep(1.5)
        for execution_id in (plain, tooled):
            assert len(cost_records(second, headers, execution_id)) == counts[execution_id]
