"""An offline, deterministic provider: it streams the task's words back.

It is what tests and first-time users run, so it is steered from the execution's
``inputs["echo"]``: ``tokens`` (reply length), ``delay_ms`` (pause before each
token), ``tool_calls`` (ask for these first) and ``fail`` (fail the call). Usage
counts one token per whitespace-separated word. Like a real model, it stops at the
request's ``max_tokens`` (``CADRE_MAX_OUTPUT_TOKENS``), however many it was asked for.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from cadre.engine.providers.base import (
    Message,
    Provider,
    ProviderError,
    ProviderEvent,
    ProviderRequest,
    TextDelta,
    ToolCall,
    ToolCallRequested,
    UsageReport,
)

MAX_TOKENS = 100_000
MAX_DELAY_MS = 60_000
FALLBACK_WORD = "echo"


def _bounded(value: Any, cap: int) -> int | None:
    """A non-negative integer capped at ``cap``; anything else counts as absent."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return min(value, cap)


@dataclass(frozen=True)
class Steering:
    tokens: int | None = None
    delay: float = 0.0
    tool_calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    fail: str | None = None

    @classmethod
    def from_inputs(cls, inputs: Any) -> Steering:
        echo = inputs.get("echo") if isinstance(inputs, dict) else None
        if not isinstance(echo, dict):
            return cls()
        calls = echo.get("tool_calls")
        fail = echo.get("fail")
        return cls(
            tokens=_bounded(echo.get("tokens"), MAX_TOKENS),
            delay=(_bounded(echo.get("delay_ms"), MAX_DELAY_MS) or 0) / 1000,
            tool_calls=tuple(
                (c["tool"], c["args"] if isinstance(c.get("args"), dict) else {})
                for c in (calls if isinstance(calls, list) else [])
                if isinstance(c, dict) and isinstance(c.get("tool"), str) and c["tool"]
            ),
            fail=fail if isinstance(fail, str) and fail else None,
        )


def _words(messages: Sequence[Message]) -> int:
    return sum(len(m.content.split()) for m in messages)


def _turn(messages: Sequence[Message]) -> tuple[str, list[Message]]:
    """The task (the last user message) and the tool results that came after it."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role == "user":
            after = messages[index + 1 :]
            return messages[index].content, [m for m in after if m.role == "tool"]
    return "", []


class EchoProvider(Provider):
    name = "echo"

    def count_prompt_tokens(self, request: ProviderRequest) -> int:
        """Exactly what the call reports: one token per word."""
        return _words(request.messages)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        steering = Steering.from_inputs(request.inputs)
        if steering.fail is not None:
            raise ProviderError(steering.fail)
        prompt_tokens = _words(request.messages)
        task, results = _turn(request.messages)
        if steering.tool_calls and not results:
            for number, (tool, args) in enumerate(steering.tool_calls, start=1):
                await asyncio.sleep(steering.delay)
                yield ToolCallRequested(ToolCall(id=f"call_{number}", tool=tool, args=args))
            yield UsageReport(prompt_tokens, completion_tokens=len(steering.tool_calls))
            return
        heard = [f"Tool {m.name or 'unknown'} returned {m.content}." for m in results]
        words = " ".join([*heard, task]).split() or [FALLBACK_WORD]
        if steering.tokens is not None:
            words = list(itertools.islice(itertools.cycle(words), steering.tokens))
        if request.max_tokens is not None:  # a length stop, as a real model's
            words = words[: request.max_tokens]
        for index, word in enumerate(words):
            if index or steering.delay:  # even 0 between tokens: a long reply must not hog
                await asyncio.sleep(steering.delay)  # the loop (nothing to wait for first)
            yield TextDelta(word if index == 0 else f" {word}")
        yield UsageReport(prompt_tokens, completion_tokens=len(words))
