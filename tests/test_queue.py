"""On PostgreSQL executions go through the Procrastinate queue: an API process started with
``--no-worker`` only queues them, ``cadre worker`` processes claim and run them, and a
worker stopped with SIGTERM hands its unfinished runs back for another to finish."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from cadre.cli import main
from scripts.live_server import Server, live_server, live_worker, login_token, reset_postgres
from tests.conftest import TEST_DATABASE_URL

pytestmark = [
    pytest.mark.skipif(
        not (TEST_DATABASE_URL or "").startswith("postgres"),
        reason="the queue needs PostgreSQL (CADRE_TEST_DATABASE_URL=postgresql://…)",
    ),
    pytest.mark.inprocess,  # starts its own processes: once, not again in the live pass
]

SLOW = {"echo": {"tokens": 120, "delay_ms": 50}}


def _env() -> dict[str, str]:
    return {"CADRE_DATABASE_URL": TEST_DATABASE_URL or "", "CADRE_RATE_LIMIT_ENABLED": "false"}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Server]:
    """``cadre serve --no-worker`` on an empty database."""
    reset_postgres(TEST_DATABASE_URL or "")
    with live_server(tmp_path / "data", "--no-worker", **_env()) as server:
        yield server


def _headers(server: Server) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {login_token(server.url)}"}
    httpx.post(f"{server.url}/api/v1/agents", json={"name": "echo"}, headers=headers)
    return headers


def _execute(server: Server, headers: dict[str, str], inputs: dict | None = None) -> str:
    reply = httpx.post(
        f"{server.url}/api/v1/agents/echo/execute",
        json={"task": "hello", "inputs": inputs or {}},
        headers=headers,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["execution_id"]


def _run(server: Server, headers: dict[str, str], run_id: str) -> dict:
    return httpx.get(f"{server.url}/api/v1/runs/{run_id}", headers=headers).json()


def _wait(server: Server, headers: dict[str, str], run_id: str, statuses: set[str]) -> dict:
    deadline = time.monotonic() + 60
    while (state := _run(server, headers, run_id))["status"] not in statuses:
        assert time.monotonic() < deadline, state
        time.sleep(0.1)
    return state


def _events(server: Server, headers: dict[str, str], run_id: str) -> list[dict]:
    reply = httpx.get(f"{server.url}/api/v1/executions/{run_id}/events", headers=headers)
    return reply.json()["events"]


def _heartbeat(run_id: str) -> object:
    return _column(run_id, "heartbeat_at")


def _column(run_id: str, column: str) -> object:
    with psycopg.connect(TEST_DATABASE_URL or "") as connection:
        row = connection.execute(
            f"SELECT {column} FROM execution WHERE id = %s", (run_id,)
        ).fetchone()
    return row[0] if row else None


def test_migrate_installs_the_queue_schema_once(monkeypatch, tmp_path, capsys):
    reset_postgres(TEST_DATABASE_URL or "")
    monkeypatch.setenv("CADRE_DATA_DIR", str(tmp_path / "cli"))
    monkeypatch.setenv("CADRE_DATABASE_URL", TEST_DATABASE_URL or "")
    assert main(["migrate"]) == 0
    assert "procrastinate schema" in capsys.readouterr().out
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out.strip() == "database is up to date"


def test_an_api_without_a_worker_only_queues_and_a_worker_runs_it(api, tmp_path):
    headers = _headers(api)
    run_id = _execute(api, headers)
    time.sleep(1.5)  # no process claims it meanwhile
    assert _run(api, headers, run_id)["status"] == "queued"
    with live_worker(tmp_path / "data", **_env()):
        state = _wait(api, headers, run_id, {"completed", "failed"})
    assert state["status"] == "completed"
    events = _events(api, headers, run_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["type"] for e in events].count("complete") == 1


def test_a_queued_execution_no_worker_holds_is_cancelled_by_the_api(api, tmp_path):
    headers = _headers(api)
    run_id = _execute(api, headers)
    reply = httpx.post(f"{api.url}/api/v1/runs/{run_id}/cancel", headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "cancelled"
    with live_worker(tmp_path / "data", **_env()):
        other = _execute(api, headers)  # the worker is up and claiming
        _wait(api, headers, other, {"completed"})
    assert _run(api, headers, run_id)["status"] == "cancelled"
    types = [e["type"] for e in _events(api, headers, run_id)]
    assert "token" not in types
    assert types.count("complete") == 1


def test_a_paused_queued_execution_runs_once_resumed(api, tmp_path):
    headers = _headers(api)
    run_id = _execute(api, headers)
    paused = httpx.post(f"{api.url}/api/v1/runs/{run_id}/pause", headers=headers)
    assert paused.json()["status"] == "paused"
    with live_worker(tmp_path / "data", **_env()):
        time.sleep(1.5)  # a worker is up, and leaves it paused
        assert _run(api, headers, run_id)["status"] == "paused"
        resumed = httpx.post(f"{api.url}/api/v1/runs/{run_id}/resume", headers=headers)
        assert resumed.status_code == 200, resumed.text
        assert _wait(api, headers, run_id, {"completed", "failed"})["status"] == "completed"


def test_sigterm_hands_running_executions_back_and_another_worker_finishes_them(api, tmp_path):
    headers = _headers(api)
    env = {**_env(), "CADRE_SHUTDOWN_GRACE_SECONDS": "1"}
    with live_worker(tmp_path / "data", **env) as worker:
        run_id = _execute(api, headers, SLOW)
        _wait(api, headers, run_id, {"running"})
        time.sleep(1.0)  # tokens are streaming
        worker.send_signal(signal.SIGTERM)
        try:
            code = worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("the worker did not exit after SIGTERM")
    assert code == 0
    handed_back = _run(api, headers, run_id)
    assert handed_back["status"] in {"queued", "running"}
    assert _heartbeat(run_id) is None  # free at once: no wait for a stale lease
    with live_worker(tmp_path / "data", **_env()):
        state = _wait(api, headers, run_id, {"completed", "failed"})
    assert state["status"] == "completed"
    events = _events(api, headers, run_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["type"] for e in events].count("complete") == 1
    costs = httpx.get(f"{api.url}/api/v1/costs?limit=100", headers=headers).json()["costs"]
    records = [r for r in costs if r["execution_id"] == run_id]
    assert state["usage"]["completion_tokens"] == sum(r["completion_tokens"] for r in records)


def test_a_stalled_worker_whose_run_was_adopted_stops_it_and_the_run_completes_once(api, tmp_path):
    headers = _headers(api)
    with live_worker(tmp_path / "stalled" / "data", **_env()) as stalled:
        run_id = _execute(api, headers, SLOW)
        _wait(api, headers, run_id, {"running"})
        owner = _column(run_id, "lease_owner")
        time.sleep(1.0)  # tokens are streaming
        with live_worker(tmp_path / "data", **_env()):
            stalled.send_signal(signal.SIGSTOP)  # alive, but its heartbeats stop
            try:
                deadline = time.monotonic() + 30
                while _column(run_id, "lease_owner") == owner:
                    assert time.monotonic() < deadline, "nobody adopted the stale run"
                    time.sleep(0.1)
            finally:
                stalled.send_signal(signal.SIGCONT)
            state = _wait(api, headers, run_id, {"completed", "failed"})
            log = next((tmp_path / "stalled").glob("worker-*.log"))
            deadline = time.monotonic() + 30
            while f"lost the lease of {run_id}" not in log.read_text():
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
    assert state["status"] == "completed"
    events = _events(api, headers, run_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["type"] for e in events].count("complete") == 1
    costs = httpx.get(f"{api.url}/api/v1/costs?limit=100", headers=headers).json()["costs"]
    records = [r for r in costs if r["execution_id"] == run_id]
    assert state["usage"]["completion_tokens"] == sum(r["completion_tokens"] for r in records)
    assert state["usage"]["prompt_tokens"] == sum(r["prompt_tokens"] for r in records)


def test_the_per_user_cap_holds_across_workers(api, tmp_path):
    headers = _headers(api)
    env = {**_env(), "CADRE_MAX_CONCURRENT_EXECUTIONS_PER_USER": "2"}
    ids = [_execute(api, headers, {"echo": {"tokens": 30, "delay_ms": 40}}) for _ in range(6)]
    most = 0
    with (
        live_worker(tmp_path / "data", **env),
        live_worker(tmp_path / "data", **env),
        psycopg.connect(TEST_DATABASE_URL or "", autocommit=True) as connection,
    ):
        deadline = time.monotonic() + 60
        while True:
            statuses = [
                row[0]
                for row in connection.execute(
                    "SELECT status FROM execution WHERE id = ANY(%s)", (ids,)
                ).fetchall()
            ]
            most = max(most, statuses.count("running"))
            if statuses == ["completed"] * len(ids):
                break
            assert time.monotonic() < deadline, statuses
            time.sleep(0.02)
    assert most == 2  # never more than the cap, and the cap was used
