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


SEED_002_SCOPES = [
    "supervisor:read",
    "supervisor:write",
    "jobs:read",
    "jobs:write",
    "resources:read",
    "resources:write",
]


def seed_002_token(base: str, scopes: list[str]) -> str:
    """The seed's ``create_access_token(user_id=…, scopes=[…])``: a login with those scopes."""
    reply = httpx.post(
        f"{base}/api/v1/auth/login",
        json={"username": "user", "password": PASSWORD, "scopes": scopes},
    )
    reply.raise_for_status()
    return reply.json()["access_token"]


def test_seed_002_complete_workflow_example(server, capsys):
    import time

    import httpx as requests  # the same module-level calls as requests'

    base, _ = server
    API_BASE = base
    TOKEN = seed_002_token(base, SEED_002_SCOPES)
    headers = {"Authorization": f"Bearer {TOKEN}"}

    # Submit job
    response = requests.post(
        f"{API_BASE}/api/v1/jobs/submit",
        headers=headers,
        json={"task_description": "Build React dashboard", "worker_count": 2, "depth": 0},
    )
    job = response.json()
    job_id = job["id"]
    print(f"Job created: {job_id}")

    # Allocate resources for the job
    response = requests.post(
        f"{API_BASE}/api/v1/resources/allocate",
        headers=headers,
        json={"job_id": job_id, "depth": 0, "worker_count": 2},
    )
    allocation = response.json()
    print(f"Resources allocated: {allocation['granted']} workers")

    # Poll job status
    while True:
        response = requests.get(f"{API_BASE}/api/v1/jobs/{job_id}", headers=headers)
        job = response.json()
        status = job["status"]
        print(f"Job status: {status}")

        if status in ["COMPLETED", "FAILED", "CANCELED"]:
            break

        time.sleep(0.1)  # the seed polls every 5 seconds

    # Release resources after completion
    response = requests.post(
        f"{API_BASE}/api/v1/resources/release",
        headers=headers,
        json={"job_id": job_id, "depth": 0},
    )
    print("Resources released")

    out = capsys.readouterr().out
    assert f"Job created: {job_id}" in out
    assert "Resources allocated: 2 workers" in out or "Resources allocated: 0 workers" in out
    assert out.rstrip().endswith("Job status: COMPLETED\nResources released")
    assert response.status_code == 200 and response.json()["released"] == 0
    assert [r["output"] for r in job["results"]] == ["Build React dashboard"] * 2


def test_seed_002_manual_testing_script(server, capsys):
    import httpx as requests

    base, _ = server
    API_BASE = base
    # Generate token
    token = seed_002_token(base, ["supervisor:read", "jobs:write", "resources:write"])
    headers = {"Authorization": f"Bearer {token}"}

    # Test workflow
    print("1. Listing workers...")
    r = requests.get(f"{API_BASE}/api/v1/supervisor/workers", headers=headers)
    print(f"   Status: {r.status_code}, Workers: {r.json()['total']}")

    print("2. Submitting job...")
    r = requests.post(
        f"{API_BASE}/api/v1/jobs/submit",
        headers=headers,
        json={"task_description": "Test job", "worker_count": 1, "depth": 0},
    )
    job_id = r.json()["id"]
    print(f"   Job ID: {job_id}")

    print("3. Getting resource quotas...")
    r = requests.get(f"{API_BASE}/api/v1/resources/quotas", headers=headers)

    # The seed's token lacks resources:read, so its third step cannot read the quotas:
    # Cadre enforces the scopes the seed lists.
    assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"
    out = capsys.readouterr().out
    assert "   Status: 200, Workers: 0" in out
    assert job_id.startswith("j_")
