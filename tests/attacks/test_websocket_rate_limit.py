"""Hardening: the WebSocket channels must not bypass the per-user rate limit."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.asyncapi_check import check_server_message
from tests.attacks.conftest import Attacked

LIMIT = 8


def ws_url(server: Attacked, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


def refused_with_rate_limit(ws) -> dict:
    message = check_server_message(json.loads(ws.recv(timeout=10)))
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
    assert message["type"] == "protocol_error"
    assert message["error"] == "rate_limit_exceeded"
    assert message["details"]["retry_after"] >= 1
    return message


def test_websocket_executions_stop_when_the_http_limit_is_spent(start_server):
    with start_server(
        CADRE_RATE_LIMIT_ENABLED="true",
        CADRE_RATE_LIMIT_AUTHENTICATED=f"{LIMIT}/hour",
        CADRE_RATE_LIMIT_ANONYMOUS="1000/hour",
    ) as server:
        token = server.token()  # register and login: anonymous requests
        headers = {"Authorization": f"Bearer {token}"}
        agent = httpx.post(f"{server.url}/api/v1/agents", json={"name": "a"}, headers=headers)
        assert agent.status_code == 201, agent.text
        agent_id = agent.json()["id"]
        used = 1
        while used < LIMIT:  # spend the rest of the bucket over HTTP
            assert httpx.get(f"{server.url}/api/v1/agents", headers=headers).status_code == 200
            used += 1
        assert httpx.get(f"{server.url}/api/v1/agents", headers=headers).status_code == 429

        for _ in range(5):  # the bypass made 25; none may start now
            with connect(
                ws_url(server, f"/api/v1/agents/{agent_id}/stream?token={token}"), open_timeout=10
            ) as ws:
                refused_with_rate_limit(ws)  # before it can send a task
        # the auth-message path and the execution stream are limited alike
        with connect(ws_url(server, f"/api/v1/agents/{agent_id}/stream"), open_timeout=10) as ws:
            ws.send(json.dumps({"type": "auth", "token": token}))
            refused_with_rate_limit(ws)
        with connect(ws_url(server, f"/api/v1/executions/nope/stream?token={token}")) as ws:
            refused_with_rate_limit(ws)

        assert sqlite_count(server.data_dir / "cadre.db", "execution") == 0


def sqlite_count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as connection:
        return connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_within_the_limit_a_websocket_execution_runs_and_counts_twice(start_server):
    with start_server(
        CADRE_RATE_LIMIT_ENABLED="true", CADRE_RATE_LIMIT_AUTHENTICATED="100/hour"
    ) as server:
        headers = server.headers()
        agent = httpx.post(f"{server.url}/api/v1/agents", json={"name": "a"}, headers=headers)
        before = int(
            httpx.get(f"{server.url}/api/v1/agents", headers=headers).headers[
                "x-ratelimit-remaining"
            ]
        )
        token = headers["Authorization"].removeprefix("Bearer ")
        url = ws_url(server, f"/api/v1/agents/{agent.json()['id']}/stream?token={token}")
        with connect(url, open_timeout=10) as ws:
            ws.send(json.dumps({"task": "hi"}))
            while check_server_message(json.loads(ws.recv(timeout=30)))["type"] != "complete":
                pass
        after = int(
            httpx.get(f"{server.url}/api/v1/agents", headers=headers).headers[
                "x-ratelimit-remaining"
            ]
        )
        assert before - after == 3  # the connection, the execution, this request
