"""The seed API descriptions' client examples, run as written against a live server.

Only the base URL (a free loopback port) and, where the seed omits it, the
bearer token differ; the OpenAI-compatible provider talks to a local stand-in
that speaks the real streaming wire protocol.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

from scripts.live_server import live_server
from tests.engine.standins import OPENAI_PATH, StandIn, openai_text, serving

PASSWORD = "password-1"


@pytest.fixture
def server(tmp_path):
    stand_in = StandIn(OPENAI_PATH)
    stand_in.script(*[openai_text("I'll ", "implement ", "it.") for _ in range(10)])
    with serving(stand_in):
        env = {
            "CADRE_OPENAI_API_KEY": "sk-test",
            "CADRE_OPENAI_BASE_URL": f"{stand_in.url}/v1",
            "CADRE_RATE_LIMIT_ENABLED": "false",
        }
        with live_server(tmp_path / "data", **env) as live:
            httpx.post(
                f"{live.url}/api/v1/auth/register",
                json={"email": "user@example.com", "username": "user", "password": PASSWORD},
            ).raise_for_status()
            yield live.url, stand_in


async def test_seed_000_python_client(server):
    base, _ = server
    # Create client
    client = httpx.AsyncClient(base_url=base)

    # Login
    response = await client.post(
        "/api/v1/auth/login", json={"username": "user@example.com", "password": PASSWORD}
    )
    token = response.json()["access_token"]

    # Set auth header
    client.headers["Authorization"] = f"Bearer {token}"

    # (the seed's agent must exist first)
    await client.post("/api/v1/agents", json={"name": "coder"})

    # List agents
    response = await client.get("/api/v1/agents")
    agents = response.json()["agents"]

    # Execute agent
    response = await client.post(
        "/api/v1/agents/coder/execute", json={"task": "Implement feature X", "mode": "safe"}
    )
    execution_id = response.json()["execution_id"]

    # Check status
    response = await client.get(f"/api/v1/agents/executions/{execution_id}")
    status = response.json()["status"]

    assert [a["name"] for a in agents] == ["coder"]
    assert execution_id.startswith("exec_")
    assert status in ("queued", "running", "completed")
    await client.aclose()


async def test_seed_000_integration_test_with_openai_agent(server):
    base, stand_in = server
    async with httpx.AsyncClient(base_url=base) as client:
        login = await client.post(
            "/api/v1/auth/login", json={"username": "user", "password": PASSWORD}
        )
        client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"

        # Create agent
        response = await client.post(
            "/api/v1/agents", json={"name": "test-agent", "provider": "openai", "model": "gpt-4"}
        )
        agent_id = response.json()["id"]

        # Execute agent
        response = await client.post(
            f"/api/v1/agents/{agent_id}/execute", json={"task": "Test task", "mode": "sandbox"}
        )
        assert response.status_code == 200
        execution_id = response.json()["execution_id"]

        # Wait for completion
        while True:
            response = await client.get(f"/api/v1/agents/executions/{execution_id}")
            status = response.json()["status"]
            if status in ["completed", "failed"]:
                break
            await asyncio.sleep(0.1)

        assert status == "completed"
        assert response.json()["result"]["output"] == "I'll implement it."
    sent = stand_in.received[-1]
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.body["model"] == "gpt-4"
    assert sent.body["stream"] is True
    assert sent.body["messages"][-1] == {"role": "user", "content": "Test task"}


async def test_seed_000_websocket_example(server):
    base, _ = server
    async with httpx.AsyncClient(base_url=base) as client:
        login = await client.post(
            "/api/v1/auth/login", json={"username": "user", "password": PASSWORD}
        )
        token = login.json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        await client.post("/api/v1/agents", json={"name": "coder"})

    ws_url = base.replace("http://", "ws://") + f"/api/v1/agents/coder/stream?token={token}"
    async with websockets.connect(ws_url) as ws:
        await ws.send(json.dumps({"task": "Implement feature X", "mode": "safe"}))
        received = []
        async for raw in ws:
            data = json.loads(raw)
            received.append(data)
            if data["type"] == "complete":
                break
    assert received[2] == {**received[2], "type": "token", "content": "Implement"}
    assert received[-1]["type"] == "complete"
    assert received[-1]["result"]["output"] == "Implement feature X"
    assert received[-1]["cost"] == 0
