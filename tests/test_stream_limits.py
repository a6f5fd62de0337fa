"""WebSocket limits in-process: the auth-message deadline, rate limits, short error details."""

from __future__ import annotations

import pytest
from starlette.websockets import WebSocketDisconnect

from cadre.errors import MAX_DETAIL_CHARS, excerpt
from tests.asyncapi_check import check_server_message
from tests.conftest import LIVE, register


def test_excerpt_keeps_short_text_and_cuts_long_text_in_the_middle():
    assert excerpt("short") == "short"
    long = "'" + "x" * 10_000 + "' is too long"
    cut = excerpt(long)
    assert len(cut) == MAX_DETAIL_CHARS
    assert cut.startswith("'xxx") and cut.endswith("' is too long") and "…" in cut


def test_a_socket_that_never_authenticates_is_closed_1008(make_client):
    client = make_client(websocket_auth_timeout_seconds=0.2)
    with client.websocket_connect("/api/v1/executions/x/stream") as ws:
        message = check_server_message(ws.receive_json())  # sent nothing at all
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert message["error"] == "not_authenticated"
    assert "within 0.2 seconds" in message["message"]
    assert closed.value.code == 1008


@pytest.mark.skipif(LIVE, reason="counts requests of one in-process app")
def test_the_stream_counts_in_the_users_http_bucket(make_client):
    client = make_client(rate_limit_authenticated="3/hour")
    alice = register(client, "alice")  # register and login are anonymous requests
    assert client.post("/api/v1/agents", json={"name": "a"}, headers=alice.headers).is_success
    url = f"/api/v1/agents/a/stream?token={alice.access_token}"
    with client.websocket_connect(url) as ws:  # the connection: 2 of 3
        ws.send_json({"task": "hi"})  # the execution: 3 of 3
        while check_server_message(ws.receive_json())["type"] != "complete":
            pass
    with client.websocket_connect(url) as ws:
        message = check_server_message(ws.receive_json())
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert message["error"] == "rate_limit_exceeded" and message["details"]["retry_after"] >= 1
    assert closed.value.code == 4429
    assert client.get("/api/v1/agents", headers=alice.headers).status_code == 429
