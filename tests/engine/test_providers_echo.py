"""The echo provider: offline, deterministic, steered by the execution's inputs."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest

from cadre.engine.providers import echo as echo_module
from cadre.engine.providers.base import (
    Message,
    ProviderError,
    ProviderRequest,
    TextDelta,
    ToolCall,
    ToolCallRequested,
    UsageReport,
)
from cadre.engine.providers.echo import EchoProvider
from cadre.engine.providers.registry import PROVIDER_NAMES, ProviderSettings, get_provider
from tests.engine.standins import collect

echo = EchoProvider()


def ask(task: str, steering: Any = None, *earlier: Message) -> ProviderRequest:
    inputs = {} if steering is None else {"echo": steering}
    return ProviderRequest(
        model="any-model-name", messages=[*earlier, Message("user", task)], inputs=inputs
    )


def text_of(events: list[Any]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def deltas(events: list[Any]) -> list[str]:
    return [e.text for e in events if isinstance(e, TextDelta)]


async def test_echo_streams_one_delta_per_word_that_join_to_the_task():
    events = await collect(echo.stream(ask("Review  this\ncode")))
    assert deltas(events) == ["Review", " this", " code"]
    assert text_of(events) == "Review this code"
    assert events[-1] == UsageReport(prompt_tokens=3, completion_tokens=3)


async def test_echo_tokens_cycles_the_task_words_to_exactly_that_many():
    events = await collect(echo.stream(ask("one two three", {"tokens": 7})))
    assert text_of(events) == "one two three one two three one"
    assert events[-1].completion_tokens == 7


async def test_echo_tokens_shorter_than_the_task_truncates():
    events = await collect(echo.stream(ask("one two three", {"tokens": 2})))
    assert text_of(events) == "one two"


async def test_echo_zero_tokens_gives_an_empty_reply_with_usage():
    events = await collect(echo.stream(ask("one two", {"tokens": 0})))
    assert events == [UsageReport(prompt_tokens=2, completion_tokens=0)]


async def test_echo_task_without_words_replies_echo():
    events = await collect(echo.stream(ask("   ", {"tokens": 3})))
    assert text_of(events) == "echo echo echo"


async def test_echo_tokens_are_capped():
    events = await collect(echo.stream(ask("w", {"tokens": 10**9})))
    assert events[-1].completion_tokens == 100_000


async def test_echo_stops_at_the_requested_max_tokens_like_a_real_model():
    request = ProviderRequest(
        model="m",
        messages=[Message("user", "one two three")],
        max_tokens=5,
        inputs={"echo": {"tokens": 10_000_000}},
    )
    events = await collect(echo.stream(request))
    assert text_of(events) == "one two three one two"
    assert events[-1].completion_tokens == 5


async def test_echo_max_tokens_also_bounds_a_long_task_echoed_back():
    request = ProviderRequest(model="m", messages=[Message("user", "a b c d e f")], max_tokens=2)
    assert text_of(await collect(echo.stream(request))) == "a b"


@pytest.mark.parametrize(
    "steering",
    [
        "not a dict",
        {"tokens": -1},
        {"tokens": "5"},
        {"tokens": 2.5},
        {"tokens": True},
        {"delay_ms": -10},
        {"delay_ms": "fast"},
        {"tool_calls": "read everything"},
        {"tool_calls": [{"args": {}}, "x", {"tool": ""}]},
        {"fail": 42},
    ],
)
async def test_echo_ignores_invalid_steering(steering):
    events = await collect(echo.stream(ask("just the task", steering)))
    assert text_of(events) == "just the task"


async def test_echo_inputs_that_are_not_a_dict_are_ignored():
    request = ProviderRequest(model="m", messages=[Message("user", "hi")], inputs=None)  # type: ignore[arg-type]
    assert text_of(await collect(echo.stream(request))) == "hi"


async def test_echo_usage_counts_words_of_every_message():
    earlier = [
        Message("system", "You are terse."),
        Message("user", "first question here"),
        Message("assistant", "first answer"),
    ]
    events = await collect(echo.stream(ask("second question", None, *earlier)))
    assert text_of(events) == "second question"  # the task is the last user message
    assert events[-1] == UsageReport(prompt_tokens=3 + 3 + 2 + 2, completion_tokens=2)


async def test_echo_fail_raises_before_any_token():
    stream = echo.stream(ask("hello", {"fail": "upstream exploded", "tokens": 5}))
    with pytest.raises(ProviderError) as raised:
        await anext(stream)
    assert raised.value.message == "upstream exploded"


def record_sleeps(monkeypatch: pytest.MonkeyPatch, log: list) -> None:
    """Log each pause the echo provider takes, in order with the tokens it yields."""
    sleep = asyncio.sleep

    async def recorded(delay: float) -> None:
        log.append(("sleep", delay))
        await sleep(0)

    monkeypatch.setattr(echo_module, "asyncio", SimpleNamespace(sleep=recorded))


async def test_echo_delay_paces_the_tokens(monkeypatch: pytest.MonkeyPatch):
    log: list = []
    record_sleeps(monkeypatch, log)

    async for event in echo.stream(ask("a b c", {"delay_ms": 50})):
        if isinstance(event, TextDelta):
            log.append(("token", event.text))

    assert log == [
        ("sleep", 0.05),
        ("token", "a"),
        ("sleep", 0.05),
        ("token", " b"),
        ("sleep", 0.05),
        ("token", " c"),
    ]


async def test_echo_cancelled_during_a_long_delay_stops_at_once():
    stream = echo.stream(ask("tick", {"tokens": 1000, "delay_ms": 60_000}))
    pending = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.05)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(pending, 30)  # a deadline far below the 60 s delay
    await stream.aclose()
    assert pending.cancelled()
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_echo_aclose_between_delayed_tokens_ends_the_stream_at_once(
    monkeypatch: pytest.MonkeyPatch,
):
    log: list = []
    record_sleeps(monkeypatch, log)
    stream = echo.stream(ask("a b c d", {"delay_ms": 500}))
    assert await anext(stream) == TextDelta("a")
    await stream.aclose()
    assert log == [("sleep", 0.5)]  # it did not wait for the next token
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_echo_cancelling_the_consumer_stops_mid_stream():
    received: list[str] = []

    async def consume() -> None:
        async for event in echo.stream(ask("tick", {"tokens": 1000, "delay_ms": 20})):
            received.append(event.text)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1.0)
    count = len(received)
    await asyncio.sleep(0.1)
    assert 0 < count == len(received) < 1000


async def test_echo_tool_calls_then_an_answer_using_their_results():
    steering = {
        "tool_calls": [
            {"tool": "filesystem_read", "args": {"path": "notes.txt"}},
            {"tool": "clock"},
        ]
    }
    first = await collect(echo.stream(ask("summarise the notes", steering)))
    assert first == [
        ToolCallRequested(ToolCall("call_1", "filesystem_read", {"path": "notes.txt"})),
        ToolCallRequested(ToolCall("call_2", "clock", {})),
        UsageReport(prompt_tokens=3, completion_tokens=2),
    ]

    calls = [event.call for event in first[:2]]
    notes = json.dumps({"content": "buy milk"})
    results = [
        Message("tool", notes, tool_call_id="call_1", name="filesystem_read"),
        Message("tool", json.dumps("12:00"), tool_call_id="call_2", name="clock"),
    ]
    second_turn = ProviderRequest(
        model="m",
        messages=[
            Message("user", "summarise the notes"),
            Message("assistant", "", tool_calls=calls),
            *results,
        ],
        inputs={"echo": steering},
    )
    second = await collect(echo.stream(second_turn))
    assert text_of(second) == (
        'Tool filesystem_read returned {"content": "buy milk"}. '
        'Tool clock returned "12:00". summarise the notes'
    )
    assert not any(isinstance(e, ToolCallRequested) for e in second)
    assert second[-1] == UsageReport(prompt_tokens=3 + 3 + 1, completion_tokens=13)


async def test_echo_tokens_caps_the_answer_after_tool_calls():
    steering = {"tool_calls": [{"tool": "clock", "args": {}}], "tokens": 3}
    request = ProviderRequest(
        model="m",
        messages=[
            Message("user", "what time"),
            Message("assistant", tool_calls=[ToolCall("call_1", "clock", {})]),
            Message("tool", '"noon"', tool_call_id="call_1", name="clock"),
        ],
        inputs={"echo": steering},
    )
    assert text_of(await collect(echo.stream(request))) == "Tool clock returned"


async def test_echo_asks_for_tools_again_after_a_new_user_message():
    steering = {"tool_calls": [{"tool": "clock", "args": {}}]}
    earlier = [
        Message("user", "first"),
        Message("assistant", tool_calls=[ToolCall("call_1", "clock", {})]),
        Message("tool", '"noon"', tool_call_id="call_1", name="clock"),
        Message("assistant", "Tool clock returned noon. first"),
    ]
    events = await collect(echo.stream(ask("second", steering, *earlier)))
    assert isinstance(events[0], ToolCallRequested)


def test_registry_knows_echo_openai_and_anthropic():
    assert PROVIDER_NAMES == ("echo", "openai", "anthropic")
    assert isinstance(get_provider("echo", ProviderSettings()), EchoProvider)


def test_registry_rejects_an_unknown_provider():
    with pytest.raises(ValueError, match="Unknown provider 'bard'"):
        get_provider("bard", ProviderSettings())


async def test_echo_aclose_of_the_provider_is_harmless():
    provider = get_provider("echo", ProviderSettings())
    await provider.aclose()
    assert text_of(await collect(provider.stream(ask("still works")))) == "still works"
