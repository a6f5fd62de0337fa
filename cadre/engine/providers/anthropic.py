"""Anthropic's Messages API, streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

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

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # the API requires max_tokens on every request


def wire_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """User and assistant turns; tool results go back as ``tool_result`` blocks of a user turn."""
    wire: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        if message.role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.content,
            }
            # All results answering one assistant turn belong in the same user turn.
            if wire and wire[-1]["role"] == "user" and isinstance(wire[-1]["content"], list):
                wire[-1]["content"].append(block)
            else:
                wire.append({"role": "user", "content": [block]})
        elif message.tool_calls:
            text = [{"type": "text", "text": message.content}] if message.content else []
            uses = [
                {"type": "tool_use", "id": call.id, "name": call.tool, "input": call.args}
                for call in message.tool_calls
            ]
            wire.append({"role": "assistant", "content": text + uses})
        else:
            wire.append({"role": message.role, "content": message.content})
    return wire


class AnthropicProvider(HTTPProvider):
    name = "anthropic"

    def endpoint(self) -> str:
        return f"{self.base_url}/v1/messages"

    def headers(self) -> dict[str, str]:
        return {
            "x-api-key": self.api_key,
            "anthropic-version": API_VERSION,
            "Accept": "text/event-stream",
        }

    def body(self, request: ProviderRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": wire_messages(request.messages),
            "stream": True,
        }
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        if system:
            body["system"] = system
        if request.tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters}
                for t in request.tools
            ]
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return body

    async def events(self, frames: AsyncIterator[ServerSentEvent]) -> AsyncIterator[ProviderEvent]:
        tool_uses: dict[Any, PendingToolCall] = {}
        input_tokens = output_tokens = 0
        async for frame in frames:
            data = decode_object(self.name, frame.data)
            kind = data.get("type", frame.event)
            if kind == "message_start":
                usage = as_dict(as_dict(data.get("message")).get("usage"))
                input_tokens = as_count(usage.get("input_tokens"))
                output_tokens = as_count(usage.get("output_tokens"))
            elif kind == "content_block_start":
                block = as_dict(data.get("content_block"))
                if block.get("type") == "tool_use":
                    tool_uses[data.get("index")] = PendingToolCall(
                        id=str(block.get("id") or ""), tool=str(block.get("name") or "")
                    )
                elif block.get("type") == "text" and block.get("text"):
                    yield TextDelta(str(block["text"]))
            elif kind == "content_block_delta":
                delta = as_dict(data.get("delta"))
                if delta.get("type") == "text_delta" and delta.get("text"):
                    yield TextDelta(str(delta["text"]))
                elif delta.get("type") == "input_json_delta" and data.get("index") in tool_uses:
                    tool_uses[data["index"]].arguments.append(str(delta.get("partial_json", "")))
            elif kind == "content_block_stop":
                call = tool_uses.pop(data.get("index"), None)
                if call is not None:
                    yield ToolCallRequested(call.finish(self.name))
            elif kind == "message_delta":
                usage = as_dict(data.get("usage"))
                output_tokens = as_count(usage.get("output_tokens")) or output_tokens
            elif kind == "message_stop":
                yield UsageReport(prompt_tokens=input_tokens, completion_tokens=output_tokens)
                return
            elif kind == "error":
                error = as_dict(data.get("error"))
                detail = error_message(data) or "unknown error"
                prefix = f"{error['type']}: " if isinstance(error.get("type"), str) else ""
                raise ProviderError(f"{self.name}: {prefix}{detail}")
        raise ProviderError(f"{self.name}: the stream ended before message_stop")
