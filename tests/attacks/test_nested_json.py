"""Hardening 1: JSON nested too deep, or too large, in bodies and WebSocket messages."""

from __future__ import annotations

import json
import sqlite3

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.attacks.conftest import Attacked, assert_refused

LIMIT = 32  # CADRE_MAX_JSON_DEPTH's default


def nested(levels: int) -> str:
    """A JSON object ``levels`` deep: ``{"a":{"a":…{}…}}``."""
    return '{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)


def post_raw(server: Attacked, path: str, body: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{server.url}{path}",
        content=body.encode(),
        headers={**headers, "Content-Type": "application/json"},
        timeout=30,
    )


@pytest.fixture(scope="module")
def agent(server: Attacked) -> str:
    reply = httpx.post(
        f"{server.url}/api/v1/agents", json={"name": "deep"}, headers=server.headers()
    )
    assert reply.status_code == 201, reply.text
    return reply.json()["id"]


def executions_of(server: Attacked) -> dict:
    reply = httpx.get(f"{server.url}/api/v1/executions", headers=server.headers())
    assert reply.status_code == 200, reply.text[:500]
    return reply.json()


@pytest.mark.parametrize("levels", [LIMIT + 1, 256, 1000])
def test_execute_with_inputs_nested_too_deep_is_422_naming_inputs(server, agent, levels):
    body = f'{{"task": "go", "inputs": {nested(levels)}}}'
    reply = post_raw(server, f"/api/v1/agents/{agent}/execute", body, server.headers())
    problem = assert_refused(reply, 422, "validation_error")
    assert problem["details"] == {"body.inputs": f"nested deeper than {LIMIT} levels"}
    assert executions_of(server)["total"] == 0  # nothing stored


def test_inputs_nested_exactly_to_the_limit_are_accepted_and_listed(server):
    headers = server.headers("shallow")
    agent = httpx.post(f"{server.url}/api/v1/agents", json={"name": "ok"}, headers=headers)
    body = f'{{"task": "go", "inputs": {nested(LIMIT)}}}'
    reply = post_raw(server, f"/api/v1/agents/{agent.json()['id']}/execute", body, headers)
    assert reply.status_code == 200, reply.text
    listed = httpx.get(f"{server.url}/api/v1/executions", headers=server.headers("shallow"))
    assert listed.status_code == 200
    assert json.dumps(listed.json()["executions"][0]["inputs"], separators=(",", ":")) == nested(
        LIMIT
    )


def test_tool_args_nested_too_deep_are_422_naming_args(server):
    body = f'{{"args": {{"path": "x", "deep": {nested(500)}}}}}'
    reply = post_raw(server, "/api/v1/tools/calculator/execute", body, server.headers())
    problem = assert_refused(reply, 422, "validation_error")
    assert problem["details"] == {"body.args": f"nested deeper than {LIMIT} levels"}


def test_body_nested_past_the_parser_limit_is_400_not_500(server, agent):
    body = f'{{"task": "go", "inputs": {nested(5000)}}}'
    reply = post_raw(server, f"/api/v1/agents/{agent}/execute", body, server.headers())
    assert_refused(reply, 400, "invalid_json")


def test_inputs_larger_than_the_limit_are_422(server, agent):
    inputs = {f"k{i}": "x" * 2000 for i in range(40)}  # 80 kB, under the body limit
    reply = httpx.post(
        f"{server.url}/api/v1/agents/{agent}/execute",
        json={"task": "go", "inputs": inputs},
        headers=server.headers(),
    )
    problem = assert_refused(reply, 422, "validation_error")
    assert problem["details"] == {"body.inputs": "larger than 65536 bytes as JSON"}
    assert executions_of(server)["total"] == 0


def _stream(server: Attacked, agent: str, message: str) -> tuple[dict, int | None, str]:
    url = server.url.replace("http://", "ws://")
    token = server.token()
    with connect(f"{url}/api/v1/agents/{agent}/stream?token={token}", max_size=None) as ws:
        ws.send(message)
        reply = json.loads(ws.recv(timeout=30))
        with pytest.raises(ConnectionClosed):  # the server closes after the error
            ws.recv(timeout=30)
        return reply, ws.close_code, ws.close_reason


def test_agent_stream_task_nested_too_deep_closes_1007_with_a_protocol_error(server, agent):
    message = f'{{"task": "go", "inputs": {nested(256)}}}'
    reply, code, reason = _stream(server, agent, message)
    assert reply["type"] == "protocol_error"
    assert reply["error"] == "validation_error"
    assert reply["details"] == {"body.inputs": f"nested deeper than {LIMIT} levels"}
    assert code == 1007
    assert "nest at most 32 levels" in reason
    assert executions_of(server)["total"] == 0


def test_agent_stream_task_nested_past_the_parser_limit_closes_1007(server, agent):
    reply, code, reason = _stream(server, agent, f'{{"task": "go", "inputs": {nested(5000)}}}')
    assert reply["type"] == "protocol_error"
    assert code == 1007
    assert reason


def test_a_stored_value_nested_too_deep_does_not_break_the_lists(server):
    """A row stored before the limit existed: lists and reads still answer 200."""
    headers = server.headers("legacy")
    created = httpx.post(f"{server.url}/api/v1/agents", json={"name": "old"}, headers=headers)
    started = httpx.post(
        f"{server.url}/api/v1/agents/{created.json()['id']}/execute",
        json={"task": "go"},
        headers=headers,
    )
    execution = started.json()["execution_id"]
    status = ""
    while status != "completed":  # the run must not write its result over ours
        reply = httpx.get(f"{server.url}/api/v1/executions/{execution}", headers=headers)
        status = reply.json()["status"]
        assert status in {"queued", "running", "completed"}
    with sqlite3.connect(server.data_dir / "cadre.db") as db:
        db.execute(
            "UPDATE execution SET inputs = ?, result = ? WHERE id = ?",
            (nested(300), nested(990), execution),
        )
    listed = httpx.get(f"{server.url}/api/v1/executions", headers=headers)
    assert listed.status_code == 200, listed.text[:500]
    row = listed.json()["executions"][0]
    assert set(row["inputs"]) == {"_omitted"}
    assert set(row["result"]) == {"_omitted"}
    one = httpx.get(f"{server.url}/api/v1/executions/{execution}", headers=headers)
    assert one.status_code == 200, one.text[:500]
    assert set(one.json()["inputs"]) == {"_omitted"}


def test_agent_stream_message_larger_than_the_body_limit_closes_1009(server, agent):
    url = server.url.replace("http://", "ws://")
    token = server.token()
    with connect(f"{url}/api/v1/agents/{agent}/stream?token={token}", max_size=None) as ws:
        ws.send('{"task": "' + "x" * (2 * 1024 * 1024) + '"}')
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)
    assert ws.close_code == 1009
    assert executions_of(server)["total"] == 0
