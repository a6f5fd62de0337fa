"""The anthropic provider against a local Messages API stand-in, over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from cadre.engine.providers.anthropic import AnthropicProvider
from cadre.engine.providers.base import (
    Message,
    ProviderError,
    ProviderNotConfigured,
    ProviderRequest,
    TextDelta,
    ToolCall,
    ToolCallRequested,
    ToolSpec,
    UsageReport,
)
from cadre.engine.providers.registry import ProviderSettings, get_provider
from tests.engine.standins import (
    ANTHROPIC_PATH,
    StandIn,
    Stream,
    anthropic_end,
    anthropic_error,
    anthropic_event,
    anthropic_start,
    anthropic_stream,
    anthropic_text_block,
    anthropic_tool_block,
    closed_port_url,
    collect,
    serving,
)

KEY = "sk-ant-standin-secret"
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather in a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


def ask(task: str = "Say hello", **fields: object) -> ProviderRequest:
    return ProviderRequest(
        model="claude-sonnet-4-20250514", messages=[Message("user", task)], **fields
    )


def settings_for(url: str, timeout: float = 10.0) -> ProviderSettings:
    return ProviderSettings(anthropic_api_key=KEY, anthropic_base_url=url, request_timeout=timeout)


@pytest.fixture
def api() -> Iterator[StandIn]:
    with serving(StandIn(ANTHROPIC_PATH)) as stand_in:
        yield stand_in


@pytest.fixture
async def provider(api: StandIn) -> AsyncIterator[AnthropicProvider]:
    provider = get_provider("anthropic", settings_for(api.url))
    assert isinstance(provider, AnthropicProvider)
    yield provider
    await provider.aclose()


async def test_anthropic_streams_text_deltas_then_usage(api, provider):
    api.script(
        anthropic_stream(anthropic_text_block(0, "Hel", "lo!"), input_tokens=25, output_tokens=4)
    )
    events = await collect(provider.stream(ask()))
    assert events == [
        TextDelta("Hel"),
        TextDelta("lo!"),
        UsageReport(prompt_tokens=25, completion_tokens=4),
    ]


async def test_anthropic_request_carries_key_version_and_messages_body(api, provider):
    api.script(anthropic_stream(anthropic_text_block(0, "ok")))
    request = ProviderRequest(
        model="claude-sonnet-4-20250514",
        messages=[
            Message("system", "Be brief."),
            Message("system", "Answer in French."),
            Message("user", "Weather?"),
        ],
        tools=(WEATHER,),
        temperature=0.3,
    )
    await collect(provider.stream(request))
    [received] = api.received
    assert received.headers["x-api-key"] == KEY
    assert received.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in received.headers
    assert received.body == {
        "model": "claude-sonnet-4-20250514",
        "max_tokens": 4096,
        "system": "Be brief.\n\nAnswer in French.",
        "messages": [{"role": "user", "content": "Weather?"}],
        "tools": [
            {
                "name": "get_weather",
                "description": "Current weather in a city",
                "input_schema": WEATHER.parameters,
            }
        ],
        "temperature": 0.3,
        "stream": True,
    }


async def test_anthropic_sends_the_requested_max_tokens(api, provider):
    api.script(anthropic_stream(anthropic_text_block(0, "ok")))
    await collect(provider.stream(ask(max_tokens=300)))
    body = api.received[0].body
    assert body["max_tokens"] == 300
    assert "system" not in body and "tools" not in body and "temperature" not in body


async def test_anthropic_stream_assembles_tool_use_blocks(api, provider):
    api.script(
        anthropic_stream(
            anthropic_text_block(0, "Let me check."),
            anthropic_tool_block(1, "toolu_01", "get_weather", '{"ci', 'ty": "Pa', 'ris"}'),
            anthropic_tool_block(2, "toolu_02", "get_time", ""),
            input_tokens=50,
            output_tokens=30,
            stop_reason="tool_use",
        )
    )
    events = await collect(provider.stream(ask(tools=(WEATHER,))))
    assert events == [
        TextDelta("Let me check."),
        ToolCallRequested(ToolCall(id="toolu_01", tool="get_weather", args={"city": "Paris"})),
        ToolCallRequested(ToolCall(id="toolu_02", tool="get_time", args={})),
        UsageReport(prompt_tokens=50, completion_tokens=30),
    ]


async def test_anthropic_second_turn_sends_tool_use_and_grouped_tool_results(api, provider):
    api.script(anthropic_stream(anthropic_text_block(0, "Sunny, 14:00.")))
    weather = ToolCall(id="toolu_01", tool="get_weather", args={"city": "Paris"})
    time_ = ToolCall(id="toolu_02", tool="get_time", args={})
    messages = [
        Message("system", "Be brief."),
        Message("user", "Weather and time in Paris?"),
        Message("assistant", "Let me check.", tool_calls=[weather, time_]),
        Message("tool", '{"sky": "sunny"}', tool_call_id="toolu_01", name="get_weather"),
        Message("tool", '"14:00"', tool_call_id="toolu_02", name="get_time"),
    ]
    await collect(provider.stream(ProviderRequest(model="claude-3-5-haiku", messages=messages)))
    assert api.received[0].body["messages"] == [
        {"role": "user", "content": "Weather and time in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_01",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": '{"sky": "sunny"}'},
                {"type": "tool_result", "tool_use_id": "toolu_02", "content": '"14:00"'},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("status", "type_", "message"),
    [
        (401, "authentication_error", "invalid x-api-key"),
        (400, "invalid_request_error", "max_tokens: Field required"),
        (529, "overloaded_error", "Overloaded"),
    ],
)
async def test_anthropic_error_status_raises_with_upstream_message(
    api, provider, status, type_, message
):
    api.script(anthropic_error(status, type_, message))
    with pytest.raises(ProviderError) as raised:
        await collect(provider.stream(ask()))
    assert raised.value.message == f"anthropic: {status} {message}"
    assert raised.value.status_code == status
    assert KEY not in str(raised.value)


async def test_anthropic_error_event_mid_stream_raises(api, provider):
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    api.script(
        Stream([anthropic_start(10), *anthropic_text_block(0, "Hi"), anthropic_event(error)])
    )
    with pytest.raises(ProviderError, match="anthropic: overloaded_error: Overloaded"):
        await collect(provider.stream(ask()))


async def test_anthropic_invalid_tool_input_raises(api, provider):
    api.script(anthropic_stream(anthropic_tool_block(0, "toolu_01", "get_weather", '{"city": ')))
    with pytest.raises(ProviderError, match="not a JSON object"):
        await collect(provider.stream(ask()))


async def test_anthropic_stream_cut_off_before_message_stop_raises(api, provider):
    api.script(Stream([anthropic_start(10), *anthropic_text_block(0, "Hi")]))
    with pytest.raises(ProviderError, match="ended before message_stop"):
        await collect(provider.stream(ask()))


async def test_anthropic_usage_comes_from_message_start_and_message_delta(api, provider):
    frames = [anthropic_start(99), *anthropic_text_block(0, "a"), *anthropic_end(7)]
    api.script(Stream(frames))
    events = await collect(provider.stream(ask()))
    assert events[-1] == UsageReport(prompt_tokens=99, completion_tokens=7)


async def test_anthropic_aclose_mid_stream_closes_the_connection(api, provider):
    ticks = anthropic_text_block(0, *["tick "] * 400)
    api.script(Stream([anthropic_start(5), *ticks], delay=0.02))
    stream = provider.stream(ask())
    assert await anext(stream) == TextDelta("tick ")
    await stream.aclose()
    assert await asyncio.to_thread(api.cut_short.wait, 2.0)


async def test_anthropic_unreachable_server_raises_provider_error():
    provider = get_provider("anthropic", settings_for(closed_port_url()))
    try:
        with pytest.raises(ProviderError, match="anthropic: request failed"):
            await collect(provider.stream(ask()))
    finally:
        await provider.aclose()


def test_anthropic_without_key_is_not_configured():
    with pytest.raises(ProviderNotConfigured, match="CADRE_ANTHROPIC_API_KEY"):
        get_provider("anthropic", ProviderSettings(openai_api_key="sk-other"))
