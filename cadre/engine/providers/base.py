"""What every LLM provider speaks: messages in, a stream of events out.

One ``stream()`` consumption is one model call, that is one assistant turn. A turn
that asks for tools yields complete ``ToolCallRequested`` events and ends; the
caller runs the tools and calls ``stream()`` again with the assistant message and
the ``role="tool"`` results appended. A stream yields one ``UsageReport`` last,
whenever the provider reports usage. Closing the stream early (``aclose()`` or
cancelling the task) releases the HTTP connection at once.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import httpx


@dataclass(frozen=True)
class ToolSpec:
    """A tool offered to the model; ``parameters`` is a JSON Schema object."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    id: str
    tool: str
    args: dict[str, Any]


@dataclass
class Message:
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)  # assistant turns that asked for tools
    tool_call_id: str | None = None  # role="tool": the call this answers
    name: str | None = None  # role="tool": the tool's name


@dataclass(frozen=True)
class ProviderRequest:
    model: str
    messages: Sequence[Message]
    tools: Sequence[ToolSpec] = ()
    temperature: float | None = None
    max_tokens: int | None = None
    inputs: dict[str, Any] = field(default_factory=dict)  # the execution's; steers echo


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallRequested:
    call: ToolCall


@dataclass(frozen=True)
class UsageReport:
    prompt_tokens: int
    completion_tokens: int


ProviderEvent = TextDelta | ToolCallRequested | UsageReport


class ProviderError(Exception):
    """A model call failed; ``message`` is safe to show (it never holds a key)."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


class ProviderNotConfigured(ProviderError):
    """The provider needs settings (an API key) that are missing."""


# What a chat template adds around each message or tool, and around a request that
# offers tools (Anthropic's tool-use system prompt is a few hundred tokens).
MESSAGE_OVERHEAD_TOKENS = 16
TOOLS_OVERHEAD_TOKENS = 1024


class Provider(ABC):
    name: ClassVar[str]

    def count_prompt_tokens(self, request: ProviderRequest) -> int:
        """Before the call: at least as many prompt tokens as the provider will bill.

        Byte-level BPE tokenizers never make a token of less than one byte, so the
        UTF-8 size of what is sent, plus the template's overhead, is an upper bound.
        Providers that know their tokenizer count exactly instead.
        """
        total = 0
        for message in request.messages:
            total += len(message.content.encode()) + MESSAGE_OVERHEAD_TOKENS
            for call in message.tool_calls:
                arguments = json.dumps(call.args, ensure_ascii=False)
                total += len(f"{call.id}{call.tool}{arguments}".encode()) + MESSAGE_OVERHEAD_TOKENS
            total += len((message.name or "").encode()) + len((message.tool_call_id or "").encode())
        for tool in request.tools:
            schema = json.dumps(tool.parameters, ensure_ascii=False)
            total += len(f"{tool.name}{tool.description}{schema}".encode())
            total += MESSAGE_OVERHEAD_TOKENS
        if request.tools:
            total += TOOLS_OVERHEAD_TOKENS
        return total

    @abstractmethod
    def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        """One model call: text deltas and tool calls as they come, then usage."""

    async def aclose(self) -> None:  # noqa: B027 - providers without connections keep none
        """Release what the provider holds open (its HTTP client)."""


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str


async def server_sent_events(lines: AsyncIterator[str]) -> AsyncIterator[ServerSentEvent]:
    """Parse an SSE body (``event:``/``data:`` fields, blank-line separated)."""
    event, data = "", []
    async for line in lines:
        if not line:
            if data:
                yield ServerSentEvent(event or "message", "\n".join(data))
            event, data = "", []
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data:
        yield ServerSentEvent(event or "message", "\n".join(data))


def decode_object(provider: str, data: str) -> dict[str, Any]:
    """One stream frame's JSON object, or a ProviderError naming the malformed frame."""
    try:
        value = json.loads(data)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ProviderError(f"{provider}: malformed stream frame: {data[:200]!r}")
    return value


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else empty: stream fields are read defensively."""
    return value if isinstance(value, dict) else {}


def as_count(value: Any) -> int:
    """A token count from a stream frame; anything but a non-negative integer counts 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def error_message(body: Any) -> str | None:
    """The message in an API error body: ``{"error": {"message": …}}`` and common variants."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    if isinstance(error, str):
        return error
    message = body.get("message")
    return message if isinstance(message, str) else None


@dataclass
class PendingToolCall:
    """A tool call whose arguments still arrive in JSON fragments."""

    id: str
    tool: str
    arguments: list[str] = field(default_factory=list)

    def finish(self, provider: str) -> ToolCall:
        text = "".join(self.arguments).strip()
        try:
            args = json.loads(text) if text else {}
        except ValueError:
            args = None
        if not isinstance(args, dict):
            raise ProviderError(
                f"{provider}: the arguments of tool call {self.id} ({self.tool}) "
                f"are not a JSON object: {text[:200]!r}"
            )
        return ToolCall(id=self.id, tool=self.tool, args=args)


class HTTPProvider(Provider):
    """A provider behind a streaming HTTP API: one lazily created client per instance."""

    def __init__(self, *, api_key: str, base_url: str, timeout: float) -> None:
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None

    @abstractmethod
    def endpoint(self) -> str:
        """The streaming endpoint's URL."""

    @abstractmethod
    def headers(self) -> dict[str, str]:
        """Authentication and version headers."""

    @abstractmethod
    def body(self, request: ProviderRequest) -> dict[str, Any]:
        """The JSON request body, in the API's own format."""

    @abstractmethod
    def events(self, frames: AsyncIterator[ServerSentEvent]) -> AsyncIterator[ProviderEvent]:
        """Turn the API's SSE frames into provider events."""

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        client = self._client
        if client is None:
            client = self._client = httpx.AsyncClient(timeout=self.timeout)
        try:
            async with client.stream(
                "POST", self.endpoint(), json=self.body(request), headers=self.headers()
            ) as response:
                if not response.is_success:
                    raise await self._status_error(response)
                async with (
                    aclosing(server_sent_events(response.aiter_lines())) as frames,
                    aclosing(self.events(frames)) as events,
                ):
                    async for event in events:
                        yield event
        except httpx.TimeoutException as exc:
            raise ProviderError(f"{self.name}: no response within {self.timeout:g} s") from exc
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise ProviderError(f"{self.name}: request failed: {reason}") from exc

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _status_error(self, response: httpx.Response) -> ProviderError:
        await response.aread()
        try:
            message = error_message(response.json())
        except ValueError:
            message = response.text[:500].strip() or None
        detail = (message or response.reason_phrase)[:500]
        return ProviderError(
            f"{self.name}: {response.status_code} {detail}", status_code=response.status_code
        )
