"""A server killed mid-run leaves no execution stuck: the next one finishes them as interrupted."""

from __future__ import annotations

import os
import signal
import time

import httpx

from scripts.live_server import live_server, login_token
from tests.conftest import TEST_DATABASE_URL


def test_executions_of_a_killed_server_end_interrupted(tmp_path):
    env = {"CADRE_RATE_LIMIT_ENABLED": "false"}
    if TEST_DATABASE_URL:
        from scripts.live_server import reset_postgres

        reset_postgres(TEST_DATABASE_URL)
        env["CADRE_DATABASE_URL"] = TEST_DATABASE_URL
    data = tmp_path / "data"
    with live_server(data, **env) as server:
        token = login_token(server.url)
        headers = {"Authorization": f"Bearer {token}"}
        httpx.post(f"{server.url}/api/v1/agents", json={"name": "slow"}, headers=headers)
        body = {"task": "a long one", "inputs": {"echo": {"tokens": 10000, "delay_ms": 50}}}
        ids = [
            httpx.post(
                f"{server.url}/api/v1/agents/slow/execute", json=body, headers=headers
            ).json()["execution_id"]
            for _ in range(3)
        ]
        time.sleep(0.5)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()

    with live_server(data, **env) as server:
        token = login_token(server.url)
        headers = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 30
        while True:
            states = [
                httpx.get(f"{server.url}/api/v1/executions/{i}", headers=headers).json()
                for i in ids
            ]
            if all(s["status"] == "failed" for s in states) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert [(s["status"], s["stop_reason"]) for s in states] == [("failed", "interrupted")] * 3
    assert all(s["completed_at"] for s in states)
