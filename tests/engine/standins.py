"""Local stand-ins for the OpenAI and Anthropic streaming APIs, served over real HTTP.

Each stand-in replies from a script (a queue of streams and failures) with the SSE
bytes and error bodies the real APIs send, records every request it receives,
and notices when a client walks away from a stream before its end.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"


@dataclass(frozen=True)
class Stream:
    """A 200 text/event-stream reply; ``delay`` seconds pass before each frame."""

    frames: Sequence[bytes]
    delay: float = 0.0


@dataclass(frozen=True)
class Failure:
    status: int
    body: dict[str, Any]


Reply = Stream | Failure


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]  # names in lower case
    body: dict[str, Any]


class StandIn:
    """One scripted streaming endpoint."""

    def __init__(self, path: str) -> None:
        self.replies: deque[Reply] = deque()
        self.received: list[Received] = []
        self.cut_short = threading.Event()  # a stream stopped before its last frame
        self.url = ""  # set while served
        self.app = Starlette(routes=[Route(path, self._reply, methods=["POST"])])

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def _reply(self, request: Request) -> Response:
        self.received.append(Received(dict(request.headers), await request.json()))
        reply = self.replies.popleft()
        if isinstance(reply, Failure):
            return JSONResponse(reply.body, status_code=reply.status)
        return StreamingResponse(self._frames(reply), media_type="text/event-stream")

    async def _frames(self, reply: Stream) -> AsyncIterator[bytes]:
        sent = 0
        try:
            for frame in reply.frames:
                await asyncio.sleep(reply.delay)
                yield frame
                sent += 1
        finally:
            if sent < len(reply.frames):
                self.cut_short.set()


@contextmanager
def serving(stand_in: StandIn) -> Iterator[StandIn]:
    """Serve the stand-in on a free 127.0.0.1 port from a background thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        stand_in.app,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the stand-in server did not start")
        time.sleep(0.01)
    stand_in.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield stand_in
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


async def collect(stream: AsyncIterable[Any]) -> list[Any]:
    """Every event of a provider stream, in order."""
    return [event async for event in stream]


def closed_port_url() -> str:
    """A URL nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


# -- OpenAI Chat Completions -----------------------------------------------------------

OPENAI_DONE = b"data: [DONE]\n\n"


def openai_frame(chunk: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(chunk)}\n\n".encode()


def openai_chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
    return openai_frame(
        {
            "id": "chatcmpl-standin",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "gpt-4o-mini-2024-07-18",
            "system_fingerprint": "fp_standin",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
            "usage": None,
        }
    )


def openai_usage(prompt_tokens: int, completion_tokens: int) -> bytes:
    return openai_frame(
        {
            "id": "chatcmpl-standin",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


def openai_tool_delta(
    index: int, *, call_id: str | None = None, name: str | None = None, arguments: str = ""
) -> dict[str, Any]:
    """One entry of ``delta.tool_calls``: id and name only in a call's first fragment."""
    if call_id is None:
        return {"index": index, "function": {"arguments": arguments}}
    return {
        "index": index,
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def openai_text(*pieces: str, usage: tuple[int, int] | None = (7, 3)) -> Stream:
    frames = [openai_chunk({"role": "assistant", "content": "", "refusal": None})]
    frames += [openai_chunk({"content": piece}) for piece in pieces]
    frames.append(openai_chunk({}, finish_reason="stop"))
    if usage is not None:
        frames.append(openai_usage(*usage))
    return Stream([*frames, OPENAI_DONE])


def openai_error(status: int, message: str, type_: str, code: str | None = None) -> Failure:
    return Failure(
        status, {"error": {"message": message, "type": type_, "param": None, "code": code}}
    )


# -- Anthropic Messages ----------------------------------------------------------------


def anthropic_event(data: dict[str, Any]) -> bytes:
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()


def anthropic_start(input_tokens: int) -> bytes:
    return anthropic_event(
        {
            "type": "message_start",
            "message": {
                "id": "msg_standin",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "claude-sonnet-4-20250514",
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1},
            },
        }
    )


def anthropic_text_block(index: int, *pieces: str) -> list[bytes]:
    return [
        anthropic_event(
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "text", "text": ""},
            }
        ),
        *(
            anthropic_event(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": piece},
                }
            )
            for piece in pieces
        ),
        anthropic_event({"type": "content_block_stop", "index": index}),
    ]


def anthropic_tool_block(index: int, call_id: str, name: str, *json_pieces: str) -> list[bytes]:
    return [
        anthropic_event(
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "tool_use", "id": call_id, "name": name, "input": {}},
            }
        ),
        *(
            anthropic_event(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": piece},
                }
            )
            for piece in json_pieces
        ),
        anthropic_event({"type": "content_block_stop", "index": index}),
    ]


def anthropic_end(output_tokens: int, stop_reason: str = "end_turn") -> list[bytes]:
    return [
        anthropic_event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            }
        ),
        anthropic_event({"type": "message_stop"}),
    ]


def anthropic_stream(
    *blocks: list[bytes],
    input_tokens: int = 11,
    output_tokens: int = 5,
    stop_reason: str = "end_turn",
) -> Stream:
    """A whole message: start, a ping, the content blocks, usage and stop."""
    frames = [anthropic_start(input_tokens), anthropic_event({"type": "ping"})]
    for block in blocks:
        frames += block
    return Stream([*frames, *anthropic_end(output_tokens, stop_reason)])


def anthropic_error(status: int, type_: str, message: str) -> Failure:
    return Failure(status, {"type": "error", "error": {"type": type_, "message": message}})
