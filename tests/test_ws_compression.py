"""``cadre serve``'s WebSockets: per-message deflate in 512-byte windows (``cadre.server``),
so that a thousand open streams do not each hold uvicorn's 41 KiB of zlib state; a client
that offers no compression streams uncompressed. Against a real server on a loopback port."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from websockets.sync.client import connect

from scripts.live_server import live_server, login_token


@pytest.fixture(scope="module")
def stream_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("deflate") / "data"
    with live_server(data_dir, CADRE_RATE_LIMIT_ENABLED="false") as server:
        token = login_token(server.url, "deflater", "deflate-pass-1")
        reply = httpx.post(
            f"{server.url}/api/v1/agents",
            json={"name": "echoer"},
            headers={"Authorization": f"Bearer {token}"},
        )
        reply.raise_for_status()
        ws_base = server.url.replace("http://", "ws://")
        yield f"{ws_base}/api/v1/agents/echoer/stream?token={token}"


def tokens_until_complete(ws) -> tuple[int, str]:
    """(tokens received, final status) of a stream asked for 60 echo tokens."""
    ws.send(json.dumps({"task": "count", "inputs": {"echo": {"tokens": 60}}}))
    tokens = 0
    for raw in ws:
        event = json.loads(raw)
        if event["type"] == "token":
            tokens += event["seq"] - event.get("first_seq", event["seq"]) + 1
        elif event["type"] == "complete":
            return tokens, event["status"]
    raise AssertionError("the stream closed without complete")


def test_a_stream_is_deflated_in_512_byte_windows_and_loses_nothing(stream_url: str):
    with connect(stream_url) as ws:
        extensions = ws.response.headers["Sec-WebSocket-Extensions"]
        assert extensions == (
            "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9"
        )
        assert tokens_until_complete(ws) == (60, "completed")


def test_a_client_that_offers_no_compression_streams_uncompressed(stream_url: str):
    with connect(stream_url, compression=None) as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        assert tokens_until_complete(ws) == (60, "completed")
