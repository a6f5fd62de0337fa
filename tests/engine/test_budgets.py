"""cost_limit against a provider that does not keep to what it is asked (OpenAI stand-in)."""

from __future__ import annotations

import json

import pytest

from cadre.engine.providers.base import Message, Provider, ProviderRequest, ToolSpec
from cadre.engine.providers.openai import OpenAIProvider
from storage.costs import CostRecord
from tests.conftest import events_of, execute, register, wait_for_status
from tests.engine.standins import OPENAI_PATH, StandIn, openai_text, serving

TERMINAL = ("completed", "failed", "cancelled")
# A completion token costs 0.001 USD, a prompt token 0.0001 USD.
PRICES = {"openai": {"metered": {"input_per_million": 100, "output_per_million": 1000}}}


@pytest.fixture
def api():
    with serving(StandIn(OPENAI_PATH)) as stand_in:
        yield stand_in


@pytest.fixture
def metered(make_client, tmp_path, api):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(PRICES))
    client = make_client(
        prices_file=prices, openai_api_key="sk-test", openai_base_url=f"{api.url}/v1"
    )
    account = register(client, "payer")
    reply = client.post(
        "/api/v1/agents",
        json={"name": "gpt", "provider": "openai", "model": "metered"},
        headers=account.headers,
    )
    assert reply.status_code == 201, reply.text
    return client, account


def recorded(execution_id: str) -> float:
    rows = CostRecord.select().where(CostRecord.execution_id == execution_id)
    return round(sum(row.cost_usd for row in rows), 10)


def test_max_tokens_is_cut_to_the_budget_and_a_provider_ignoring_it_is_cut_off(api, metered):
    client, account = metered
    api.script(openai_text(*[f" w{i}" for i in range(40)], usage=None))
    execution_id = execute(client, account, "gpt", "hi", cost_limit=0.02)
    done = wait_for_status(client, account, execution_id, TERMINAL)
    assert (done["status"], done["stop_reason"]) == ("failed", "cost_limit_exceeded")
    asked = api.received[0].body
    prompt_bound = done["usage"]["prompt_tokens"]
    affordable = (0.02 - prompt_bound * 0.0001) / 0.001
    assert asked["max_tokens"] == int(affordable)
    tokens = [e for e in events_of(client, account, execution_id) if e["type"] == "token"]
    assert len(tokens) == int(affordable) == done["usage"]["completion_tokens"]
    assert done["usage"]["cost_usd"] <= 0.02
    assert recorded(execution_id) == done["usage"]["cost_usd"]


def test_real_usage_above_the_limit_is_billed_and_never_completes(api, metered):
    client, account = metered
    # The provider bills a prompt far larger than anything sent: known only afterwards.
    api.script(openai_text("fine", usage=(500, 1)))
    execution_id = execute(client, account, "gpt", "hi", cost_limit=0.02)
    done = wait_for_status(client, account, execution_id, TERMINAL)
    assert (done["status"], done["stop_reason"]) == ("failed", "cost_limit_exceeded")
    assert done["usage"]["prompt_tokens"] == 500
    assert recorded(execution_id) == done["usage"]["cost_usd"] == pytest.approx(0.051)
    assert len(api.received) == 1  # and no further call


def test_a_call_whose_prompt_the_budget_cannot_pay_is_not_made(api, metered):
    client, account = metered
    execution_id = execute(client, account, "gpt", "word " * 200, cost_limit=0.001)
    done = wait_for_status(client, account, execution_id, TERMINAL)
    assert (done["status"], done["stop_reason"]) == ("failed", "cost_limit_exceeded")
    assert api.received == []
    assert done["usage"]["cost_usd"] == 0


def test_the_default_prompt_count_is_never_below_the_utf8_size_sent() -> None:
    class Bare(Provider):
        name = "bare"

        def stream(self, request):  # pragma: no cover - never called
            raise NotImplementedError

    request = ProviderRequest(
        model="m",
        messages=[Message("system", "Be terse"), Message("user", "héllo wörld " * 50)],
        tools=[ToolSpec("t", "a tool", {"type": "object"})],
    )
    sent = json.dumps([m.content for m in request.messages], ensure_ascii=False).encode()
    assert Bare().count_prompt_tokens(request) >= len(sent)
    openai = OpenAIProvider(api_key="k", base_url="http://127.0.0.1:9", timeout=1)
    assert openai.count_prompt_tokens(request) == Bare().count_prompt_tokens(request)
