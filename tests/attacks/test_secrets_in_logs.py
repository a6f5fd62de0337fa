"""Hardening 6: ``?token=`` JWTs must not reach the server's logs."""

from __future__ import annotations

import json

import httpx
from websockets.sync.client import connect

from cadre.log_redaction import RedactSecrets, redact


def test_websocket_token_in_the_query_string_is_redacted_from_the_server_log(start_server):
    with start_server(CADRE_LOG_LEVEL="INFO") as server:
        token = server.token()
        created = httpx.post(
            f"{server.url}/api/v1/agents",
            json={"name": "logged"},
            headers={"Authorization": f"Bearer {token}"},
        )
        ws_url = server.url.replace("http://", "ws://")
        with connect(f"{ws_url}/api/v1/agents/{created.json()['id']}/stream?token={token}") as ws:
            ws.send(json.dumps({"task": "hello"}))
            while json.loads(ws.recv(timeout=30))["type"] != "complete":
                pass
        # a plain HTTP request with ?token= too, and a refused one
        httpx.get(f"{server.url}/health?token={token}")
        with connect(f"{ws_url}/api/v1/executions/nope/stream?token={token}") as ws:
            ws.recv(timeout=30)
        log = server.log.read_text()  # the process's stdout and stderr
    assert "WebSocket /api/v1/agents/" in log  # access logging was on
    assert "token=[redacted]" in log
    assert token not in log
    assert token.split(".")[2] not in log  # not even the signature


def test_redaction_covers_every_token_like_parameter():
    line = "GET /x?after=1&token=abc.def&access_token=q&refresh_token=r&password=p&x=2 HTTP/1.1"
    assert redact(line) == (
        "GET /x?after=1&token=[redacted]&access_token=[redacted]"
        "&refresh_token=[redacted]&password=[redacted]&x=2 HTTP/1.1"
    )


def test_the_filter_rewrites_arguments_in_place_for_uvicorns_access_formatter():
    import logging

    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "GET", "/a?token=secret", "1.1", 200), None,
    )  # fmt: skip
    assert RedactSecrets().filter(record)
    assert record.args == ("127.0.0.1:1", "GET", "/a?token=[redacted]", "1.1", 200)
