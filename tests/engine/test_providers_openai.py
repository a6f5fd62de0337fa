"""The openai provider against a local Chat Completions stand-in, over real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import pytest

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
from cadre.engine.providers.openai import OpenAIProvider
from cadre.engine.providers.registry import ProviderSettings, get_provider
from tests.engine.standins import (
    OPENAI_DONE,
    OPENAI_PATH,
    StandIn,
    Stream,
    closed_port_url,
    collect,
    openai_chunk,
    openai_error,
    openai_frame,
    openai_text,
    openai_tool_delta,
    openai_usage,
    serving,
)

KEY = "sk-standin-secret"
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather in a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


def ask(task: str = "Say hello", **fields: object) -> ProviderRequest:
    return ProviderRequest(model="gpt-4o-mini", messages=[Message("user", task)], **fields)


@pytest.fixture
def api() -> Iterator[StandIn]:
    with serving(StandIn(OPENAI_PATH)) as stand_in:
        yield stand_in


def settings_for(url: str, timeout: float = 10.0) -> ProviderSettings:
    return ProviderSettings(
        openai_api_key=KEY, openai_base_url=f"{url}/v1", request_timeout=timeout
    )


@pytest.fixture
async def provider(api: StandIn) -> AsyncIterator[OpenAIProvider]:
    provider = get_provider("openai", settings_for(api.url))
    assert isinstance(provider, OpenAIProvider)
    yield provider
    await provider.aclose()


async def test_openai_streams_text_deltas_then_usage(api, provider):
    api.script(openai_text("Hel", "lo", " there", usage=(12, 3)))
    events = await collect(provider.stream(ask()))
    assert events == [
        TextDelta("Hel"),
        TextDelta("lo"),
        TextDelta(" there"),
        UsageReport(prompt_tokens=12, completion_tokens=3),
    ]


async def test_openai_request_carries_key_and_chat_completions_body(api, provider):
    api.script(openai_text("ok"))
    request = ask(
        "Weather?",
        tools=(WEATHER,),
        temperature=0.2,
        max_tokens=256,
    )
    await collect(provider.stream(request))
    [received] = api.received
    assert received.headers["authorization"] == f"Bearer {KEY}"
    assert received.body == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Weather?"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather in a city",
                    "parameters": WEATHER.parameters,
                },
            }
        ],
        "temperature": 0.2,
        "max_tokens": 256,
    }


async def test_openai_omits_unset_options(api, provider):
    api.script(openai_text("ok"))
    await collect(provider.stream(ask()))
    assert set(api.received[0].body) == {"model", "messages", "stream", "stream_options"}


def test_openai_official_api_gets_max_completion_tokens():
    # OpenAI's reasoning models refuse max_tokens; compatible servers may not know the new name.
    official = OpenAIProvider(api_key=KEY, base_url="https://api.openai.com/v1", timeout=1)
    body = official.body(ask(max_tokens=100))
    assert body["max_completion_tokens"] == 100
    assert "max_tokens" not in body


async def test_openai_stream_assembles_tool_call_deltas(api, provider):
    chunk = openai_chunk
    api.script(
        Stream(
            [
                chunk({"role": "assistant", "content": None}),
                chunk({"tool_calls": [openai_tool_delta(0, call_id="call_a", name="get_weather")]}),
                chunk({"tool_calls": [openai_tool_delta(0, arguments='{"ci')]}),
                chunk({"tool_calls": [openai_tool_delta(1, call_id="call_b", name="get_time")]}),
                chunk({"tool_calls": [openai_tool_delta(1, arguments='{"zone": ')]}),
                chunk({"tool_calls": [openai_tool_delta(0, arguments='ty": "Paris"}')]}),
                chunk({"tool_calls": [openai_tool_delta(1, arguments='"CET"}')]}),
                chunk({}, finish_reason="tool_calls"),
                openai_usage(40, 22),
                OPENAI_DONE,
            ]
        )
    )
    events = await collect(provider.stream(ask(tools=(WEATHER,))))
    assert events == [
        ToolCallRequested(ToolCall(id="call_a", tool="get_weather", args={"city": "Paris"})),
        ToolCallRequested(ToolCall(id="call_b", tool="get_time", args={"zone": "CET"})),
        UsageReport(prompt_tokens=40, completion_tokens=22),
    ]


async def test_openai_second_turn_sends_assistant_tool_calls_and_tool_results(api, provider):
    api.script(openai_text("It is sunny in Paris."))
    call = ToolCall(id="call_a", tool="get_weather", args={"city": "Paris"})
    messages = [
        Message("system", "Be brief."),
        Message("user", "Weather in Paris?"),
        Message("assistant", "", tool_calls=[call]),
        Message("tool", '{"sky": "sunny"}', tool_call_id="call_a", name="get_weather"),
    ]
    request = ProviderRequest(model="gpt-4o-mini", messages=messages, tools=(WEATHER,))
    events = await collect(provider.stream(request))
    assert events[0] == TextDelta("It is sunny in Paris.")
    assert api.received[0].body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": '{"sky": "sunny"}'},
    ]


async def test_openai_without_usage_from_the_server_yields_no_usage(api, provider):
    api.script(openai_text("hi", usage=None))
    assert await collect(provider.stream(ask())) == [TextDelta("hi")]


@pytest.mark.parametrize(
    ("status", "message", "type_"),
    [
        (401, "Incorrect API key provided: sk-st***cret.", "invalid_request_error"),
        (429, "Rate limit reached for gpt-4o-mini.", "requests"),
        (500, "The server had an error while processing your request.", "server_error"),
    ],
)
async def test_openai_error_status_raises_with_upstream_message(
    api, provider, status, message, type_
):
    api.script(openai_error(status, message, type_))
    with pytest.raises(ProviderError) as raised:
        await collect(provider.stream(ask()))
    assert raised.value.message == f"openai: {status} {message}"
    assert raised.value.status_code == status
    assert KEY not in str(raised.value)


async def test_openai_invalid_tool_arguments_raise(api, provider):
    api.script(
        Stream(
            [
                openai_chunk(
                    {"tool_calls": [openai_tool_delta(0, call_id="c", name="t", arguments="{oops")]}
                ),
                openai_chunk({}, finish_reason="tool_calls"),
                OPENAI_DONE,
            ]
        )
    )
    with pytest.raises(ProviderError, match="not a JSON object"):
        await collect(provider.stream(ask()))


async def test_openai_malformed_frame_raises(api, provider):
    api.script(Stream([openai_chunk({"content": "a"}), b"data: {not json\n\n", OPENAI_DONE]))
    with pytest.raises(ProviderError, match="malformed stream frame"):
        await collect(provider.stream(ask()))


async def test_openai_error_frame_mid_stream_raises(api, provider):
    error = {"error": {"message": "The model is overloaded.", "type": "server_error"}}
    api.script(Stream([openai_chunk({"content": "a"}), openai_frame(error)]))
    with pytest.raises(ProviderError, match=r"openai: The model is overloaded\."):
        await collect(provider.stream(ask()))


async def test_openai_stream_cut_off_before_the_end_raises(api, provider):
    api.script(Stream([openai_chunk({"content": "half a rep"})]))
    with pytest.raises(ProviderError, match="ended before the reply was complete"):
        await collect(provider.stream(ask()))


async def test_openai_aclose_mid_stream_closes_the_connection(api, provider):
    api.script(Stream([openai_chunk({"content": "tick "})] * 400, delay=0.02))
    stream = provider.stream(ask())
    assert await anext(stream) == TextDelta("tick ")
    await stream.aclose()
    assert await asyncio.to_thread(api.cut_short.wait, 2.0)
    # The provider's client still serves the next call.
    api.script(openai_text("again"))
    assert (await collect(provider.stream(ask())))[0] == TextDelta("again")


async def test_openai_cancelling_the_consumer_closes_the_connection(api, provider):
    api.script(Stream([openai_chunk({"content": "tick "})] * 400, delay=0.02))
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in provider.stream(ask()):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(api.cut_short.wait, 2.0)


async def test_openai_unreachable_server_raises_provider_error():
    provider = get_provider("openai", settings_for(closed_port_url()))
    try:
        with pytest.raises(ProviderError, match="openai: request failed"):
            await collect(provider.stream(ask()))
    finally:
        await provider.aclose()


async def test_openai_silent_server_times_out(api):
    api.script(Stream([openai_chunk({"content": "late"}), OPENAI_DONE], delay=3))
    provider = get_provider("openai", settings_for(api.url, timeout=0.3))
    try:
        with pytest.raises(ProviderError, match=r"openai: no response within 0.3 s"):
            await collect(provider.stream(ask()))
    finally:
        await provider.aclose()


def test_openai_without_key_is_not_configured():
    with pytest.raises(ProviderNotConfigured, match="CADRE_OPENAI_API_KEY"):
        get_provider("openai", ProviderSettings())


def test_openai_assistant_text_and_tool_arguments_go_out_as_the_api_expects():
    call = ToolCall(id="c1", tool="write", args={"path": "a.txt", "text": "é"})
    provider = OpenAIProvider(api_key=KEY, base_url="http://localhost/v1", timeout=1)
    request = ProviderRequest(
        model="m", messages=[Message("assistant", "On it.", tool_calls=[call])]
    )
    [wire] = provider.body(request)["messages"]
    assert wire["content"] == "On it."
    assert json.loads(wire["tool_calls"][0]["function"]["arguments"]) == call.args
