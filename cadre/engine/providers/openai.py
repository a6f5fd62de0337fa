"""OpenAI-compatible Chat Completions, streamed: OpenAI, vLLM, Ollama, llama.cpp server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from cadre.engine.providers.base import (
    HTTPProvider,
    Message,
    PendingToolCall,
    ProviderError,
    ProviderEvent,
    ProviderRequest,
    ServerSentEvent,
    TextDelta,
    ToolCallRequested,
    UsageReport,
    as_count,
    as_dict,
    decode_object,
    error_message,
)

OPENAI_HOST = "api.openai.com"


def wire_message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if not message.tool_calls:
        return {"role": message.role, "content": message.content}
    return {
        "role": message.role,
        "content": message.content or None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.tool, "arguments": json.dumps(call.args)},
            }
            for call in message.tool_calls
        ],
    }


def request_body(request: ProviderRequest, *, max_tokens_field: str) -> dict[str, Any]:
    """The Chat Completions body; ``max_tokens_field`` differs between OpenAI and the rest."""
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [wire_message(m) for m in request.messages],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in request.tools
        ]
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body[max_tokens_field] = request.max_tokens
    return body


class OpenAIProvider(HTTPProvider):
    name = "openai"

    def __init__(self, *, api_key: str, base_url: str, timeout: float) -> None:
        super().__init__(api_key=api_key, base_url=base_url, timeout=timeout)
        # OpenAI's reasoning models refuse the deprecated max_tokens, while compatible
        # servers (vLLM, Ollama, llama.cpp) may not know max_completion_tokens.
        official = httpx.URL(self.base_url).host == OPENAI_HOST
        self.max_tokens_field = "max_completion_tokens" if official else "max_tokens"

    def endpoint(self) -> str:
        return f"{self.base_url}/chat/completions"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "Accept": "text/event-stream"}

    def body(self, request: ProviderRequest) -> dict[str, Any]:
        return request_body(request, max_tokens_field=self.max_tokens_field)

    async def events(self, frames: AsyncIterator[ServerSentEvent]) -> AsyncIterator[ProviderEvent]:
        pending: dict[int, PendingToolCall] = {}
        usage: UsageReport | None = None
        finished = False
        async for frame in frames:
            if frame.data.strip() == "[DONE]":
                finished = True
                break
            chunk = decode_object(self.name, frame.data)
            if chunk.get("error") is not None:
                raise ProviderError(f"{self.name}: {error_message(chunk) or chunk['error']}")
            if isinstance(chunk.get("usage"), dict):
                usage = UsageReport(
                    prompt_tokens=as_count(chunk["usage"].get("prompt_tokens")),
                    completion_tokens=as_count(chunk["usage"].get("completion_tokens")),
                )
            choices = chunk.get("choices")
            choice = as_dict(choices[0]) if isinstance(choices, list) and choices else {}
            delta = as_dict(choice.get("delta"))
            if isinstance(delta.get("content"), str) and delta["content"]:
                yield TextDelta(delta["content"])
            fragments = delta.get("tool_calls")
            for position, fragment in enumerate(fragments if isinstance(fragments, list) else []):
                self._accumulate(pending, position, as_dict(fragment))
            if choice.get("finish_reason"):
                finished = True
                for event in self._complete(pending):
                    yield event
        if not finished:
            raise ProviderError(f"{self.name}: the stream ended before the reply was complete")
        for event in self._complete(pending):
            yield event
        if usage is not None:
            yield usage

    def _accumulate(
        self, pending: dict[int, PendingToolCall], position: int, fragment: dict[str, Any]
    ) -> None:
        """Fold one tool-call delta in: id and name come first, arguments in pieces."""
        index = fragment.get("index")
        function = as_dict(fragment.get("function"))
        call = pending.setdefault(
            index if isinstance(index, int) else position, PendingToolCall(id="", tool="")
        )
        call.id = call.id or str(fragment.get("id") or "")
        call.tool = call.tool or str(function.get("name") or "")
        if isinstance(function.get("arguments"), str):
            call.arguments.append(function["arguments"])

    def _complete(self, pending: dict[int, PendingToolCall]) -> list[ToolCallRequested]:
        calls = [pending[index] for index in sorted(pending)]
        pending.clear()
        for index, call in enumerate(calls):
            if not call.tool:
                raise ProviderError(f"{self.name}: a tool call in the stream has no name")
            call.id = call.id or f"call_{index + 1}"
        return [ToolCallRequested(call.finish(self.name)) for call in calls]
