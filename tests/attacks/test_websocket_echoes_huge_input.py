"""Hardening: a WebSocket (or HTTP) validation error must not echo a huge invalid value back."""

from __future__ import annotations

import json

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.asyncapi_check import check_server_message
from tests.attacks.conftest import Attacked, assert_refused

HUGE = "x" * (512 * 1024)  # 512 KiB: under CADRE_MAX_BODY_BYTES, over the task's maxLength
MAX_DETAIL = 200


@pytest.fixture(scope="module")
def agent(server: Attacked) -> str:
    reply = httpx.post(
        f"{server.url}/api/v1/agents", json={"name": "echo"}, headers=server.headers()
    )
    assert reply.status_code == 201, reply.text
    return reply.json()["id"]


def test_a_512_kib_invalid_task_gets_a_short_protocol_error(server, agent):
    url = server.url.replace("http://", "ws://") + f"/api/v1/agents/{agent}/stream"
    with connect(f"{url}?token={server.token()}", max_size=None, open_timeout=10) as ws:
        ws.send(json.dumps({"task": HUGE}))
        raw = ws.recv(timeout=30)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
    assert len(raw) < 2000, f"the reply echoed {len(raw)} characters"
    message = check_server_message(json.loads(raw))
    assert message["error"] == "validation_error"
    detail = message["details"]["body.task"]
    assert len(detail) <= MAX_DETAIL
    assert detail.startswith("'xxx") and detail.endswith("is too long")
    executions = httpx.get(f"{server.url}/api/v1/executions", headers=server.headers())
    assert executions.json()["total"] == 0


def test_the_same_task_over_http_gets_a_short_422(server, agent):
    reply = httpx.post(
        f"{server.url}/api/v1/agents/{agent}/execute",
        json={"task": HUGE},
        headers=server.headers(),
        timeout=30,
    )
    problem = assert_refused(reply, 422, "validation_error")
    assert len(reply.content) < 2000
    assert len(problem["details"]["body.task"]) <= MAX_DETAIL
