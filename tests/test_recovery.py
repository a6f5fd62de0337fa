"""A server killed mid-run leaves no execution stuck: the next one resumes each from its last
checkpoint, repeating no provider call or tool call that had completed, billing none twice;
paused runs stay paused, runs awaiting an approval keep waiting for it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from cadre.settings import Settings
from scripts.live_server import Server, live_server, login_token
from storage import db
from tests.asyncapi_check import check_server_message
from tests.conftest import TEST_DATABASE_URL, Account
from tests.test_approval import WRITE, permissioned_run

CALCULATOR = {"tool": "calculator", "args": {"expression": "6*7"}}


@pytest.fixture
def serve(tmp_path: Path) -> Callable[[], AbstractContextManager[Server]]:
    """``cadre serve`` on one data directory (and database), as often as a test starts it."""
    env = {"CADRE_RATE_LIMIT_ENABLED": "false"}
    if TEST_DATABASE_URL:
        from scripts.live_server import reset_postgres

        reset_postgres(TEST_DATABASE_URL)
        env["CADRE_DATABASE_URL"] = TEST_DATABASE_URL
    return lambda: live_server(tmp_path / "data", **env)


def kill(server: Server) -> None:
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()


def headers_for(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {login_token(server.url)}"}


def wait_until(server: Server, headers, run_ids, done, timeout: float = 40.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        states = [
            httpx.get(f"{server.url}/api/v1/runs/{i}", headers=headers).json() for i in run_ids
        ]
        if all(done(s) for s in states) or time.monotonic() > deadline:
            return states
        time.sleep(0.25)


def events(server: Server, headers, run_id: str) -> list[dict]:
    reply = httpx.get(f"{server.url}/api/v1/executions/{run_id}/events", headers=headers)
    return [check_server_message(e) for e in reply.json()["events"]]


def test_runs_of_a_killed_server_resume_from_their_checkpoints(serve):
    with serve() as server:
        headers = headers_for(server)
        agent = {"name": "slow", "tools": ["calculator"]}
        httpx.post(f"{server.url}/api/v1/agents", json=agent, headers=headers)
        body = {
            "task": "a long one",
            "inputs": {"echo": {"tool_calls": [CALCULATOR], "tokens": 60, "delay_ms": 50}},
        }
        ids = [
            httpx.post(
                f"{server.url}/api/v1/agents/slow/execute", json=body, headers=headers
            ).json()["execution_id"]
            for _ in range(3)
        ]
        paused = httpx.post(
            f"{server.url}/api/v1/agents/slow/execute",
            json={"task": "wait", "inputs": {"echo": {"tokens": 50, "delay_ms": 50}}},
            headers=headers,
        ).json()["execution_id"]
        time.sleep(1.0)  # the tool ran, the answer is streaming
        assert (
            httpx.post(f"{server.url}/api/v1/runs/{paused}/pause", headers=headers).json()["status"]
            == "paused"
        )
        kill(server)

    with serve() as server:
        headers = headers_for(server)
        states = wait_until(server, headers, ids, lambda s: s["status"] == "completed")
        assert [s["status"] for s in states] == ["completed"] * 3
        assert all(s["result"]["output"].startswith("Tool calculator returned") for s in states)
        # paused before the kill, paused after it until asked
        assert (
            httpx.get(f"{server.url}/api/v1/runs/{paused}", headers=headers).json()["status"]
            == "paused"
        )
        resumed = httpx.post(f"{server.url}/api/v1/runs/{paused}/resume", headers=headers)
        assert resumed.status_code == 200, resumed.text
        (after,) = wait_until(server, headers, [paused], lambda s: s["status"] == "completed")
        assert after["status"] == "completed"
        for run_id in ids:
            stream = events(server, headers, run_id)
            assert [e["seq"] for e in stream] == list(range(1, len(stream) + 1))
            assert len([e for e in stream if e["type"] == "tool_result"]) == 1
        costs = httpx.get(f"{server.url}/api/v1/costs?limit=1000", headers=headers).json()
    cut_short = 0
    for run_id, state in zip(ids, states, strict=True):
        records = [r for r in costs["costs"] if r["execution_id"] == run_id]
        cut_short += len(records) == 3
        # the call that asked for the tool (1 completion token) and the full answer (60)
        # once each; at most one more: the answer the kill cut short, billed once
        assert sorted(r["completion_tokens"] for r in records)[0] == 1
        assert [r["completion_tokens"] for r in records].count(1) == 1
        assert [r["completion_tokens"] for r in records].count(60) == 1
        assert len(records) in (2, 3)
        assert state["usage"]["completion_tokens"] == sum(r["completion_tokens"] for r in records)
    assert cut_short  # the kill did cut an answer short, and recovery billed it


def test_a_run_awaiting_approval_survives_a_kill_and_continues_when_approved(serve, tmp_path):
    with serve() as server:
        headers = headers_for(server)
        agent = {"name": "writer", "tools": ["filesystem_write"]}
        httpx.post(f"{server.url}/api/v1/agents", json=agent, headers=headers)
        me = httpx.get(f"{server.url}/api/v1/auth/me", headers=headers).json()
        settings = Settings(
            _env_file=None, data_dir=tmp_path / "data", database_url=TEST_DATABASE_URL
        )
        db.open_database(settings.effective_database_url)
        run_id = permissioned_run(Account(me["id"], "", "", "", "", ""), "default")
        (waiting,) = wait_until(
            server, headers, [run_id], lambda s: s["status"] == "requires_action"
        )
        assert waiting["status"] == "requires_action"
        kill(server)

    with serve() as server:
        headers = headers_for(server)
        time.sleep(6)  # past the time after which a run nobody beats for is taken over
        state = httpx.get(f"{server.url}/api/v1/runs/{run_id}", headers=headers).json()
        assert state["status"] == "requires_action"  # still waiting: no worker holds it
        reply = httpx.post(
            f"{server.url}/api/v1/runs/{run_id}/approve",
            json={"tool_call_id": "call_1", "decision": "allow"},
            headers=headers,
        )
        assert reply.status_code == 200, reply.text
        (done,) = wait_until(server, headers, [run_id], lambda s: s["status"] == "completed")
        stream = events(server, headers, run_id)
    assert done["status"] == "completed"
    assert (tmp_path / "data" / "workspaces" / me["id"] / "note.txt").read_text() == WRITE["args"][
        "content"
    ]
    kinds = [e["type"] for e in stream]
    assert kinds.count("approval_required") == 1 and kinds.count("tool_result") == 1
    assert kinds[-1] == "complete"
