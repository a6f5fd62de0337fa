"""Hardening: one user's slow runs hold not every slot, a paused run none, and none runs forever."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.attacks.conftest import Attacked, serve

SLOW = {"echo": {"tokens": 400, "delay_ms": 100}}  # 40 s: cancelled long before it ends


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attacked]:
    with serve(
        tmp_path_factory.mktemp("starved"),
        CADRE_MAX_CONCURRENT_EXECUTIONS="4",
        CADRE_MAX_CONCURRENT_EXECUTIONS_PER_USER="2",
    ) as attacked:
        yield attacked


_tokens: dict[tuple[str, str], dict[str, str]] = {}


def headers(server: Attacked, user: str) -> dict[str, str]:
    """Logging in hashes a password: once per user and server is enough."""
    key = (server.url, user)
    if key not in _tokens:
        _tokens[key] = server.headers(user)
    return _tokens[key]


def agent(server: Attacked, user: str) -> str:
    reply = httpx.post(
        f"{server.url}/api/v1/agents", json={"name": f"{user}-agent"}, headers=headers(server, user)
    )
    assert reply.status_code == 201, reply.text
    return reply.json()["id"]


def start(server: Attacked, user: str, agent_id: str, **body: object) -> str:
    reply = httpx.post(
        f"{server.url}/api/v1/agents/{agent_id}/execute",
        json={"task": "slow words here", **body},
        headers=headers(server, user),
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["execution_id"]


def state(server: Attacked, user: str, execution_id: str) -> dict:
    reply = httpx.get(
        f"{server.url}/api/v1/executions/{execution_id}", headers=headers(server, user)
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def wait_for(server: Attacked, user: str, execution_id: str, *statuses: str) -> dict:
    deadline = time.monotonic() + 30
    while True:
        body = state(server, user, execution_id)
        if body["status"] in statuses:
            return body
        assert time.monotonic() < deadline, f"{execution_id} still {body['status']}"
        time.sleep(0.05)


def control(server: Attacked, user: str, execution_id: str, action: str) -> str:
    reply = httpx.post(
        f"{server.url}/api/v1/executions/{execution_id}/{action}",
        headers=headers(server, user),
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["status"]


def statuses(server: Attacked, user: str, execution_id: str) -> list[str]:
    reply = httpx.get(
        f"{server.url}/api/v1/executions/{execution_id}/events", headers=headers(server, user)
    )
    return [e["status"] for e in reply.json()["events"] if e["type"] == "status"]


def test_a_users_extra_runs_queue_in_order_while_others_and_resumed_runs_get_slots(server):
    a_agent, b_agent = agent(server, "alice"), agent(server, "bob")
    a1, a2, a3, a4 = (start(server, "alice", a_agent, inputs=SLOW) for _ in range(4))
    try:
        wait_for(server, "alice", a1, "running")
        wait_for(server, "alice", a2, "running")
        # Two free slots remain, but Alice is at her cap of two: her others wait.
        b1 = start(server, "bob", b_agent, inputs={"echo": {"tokens": 1}})
        done = wait_for(server, "bob", b1, "completed", "failed", "cancelled")
        assert (done["status"], done["usage"]["completion_tokens"]) == ("completed", 1)
        assert state(server, "alice", a3)["status"] == "queued"
        assert state(server, "alice", a4)["status"] == "queued"

        # Pausing gives the slot back: the first in Alice's line starts, the second waits.
        assert control(server, "alice", a1, "pause") == "paused"
        wait_for(server, "alice", a3, "running")
        assert state(server, "alice", a4)["status"] == "queued"

        # Resumed, a run queues again behind those already waiting.
        assert control(server, "alice", a1, "resume") == "queued"
        assert control(server, "alice", a2, "cancel") == "cancelled"
        wait_for(server, "alice", a4, "running")
        assert state(server, "alice", a1)["status"] == "queued"
        assert control(server, "alice", a3, "cancel") == "cancelled"
        wait_for(server, "alice", a1, "running")
        assert statuses(server, "alice", a1) == ["queued", "running", "paused", "queued", "running"]
        assert statuses(server, "alice", a4) == ["queued", "running"]
    finally:
        for execution_id in (a1, a2, a3, a4):
            httpx.post(
                f"{server.url}/api/v1/executions/{execution_id}/cancel",
                headers=headers(server, "alice"),
                timeout=30,
            )


def test_a_queued_run_cancelled_frees_its_place_and_leaks_no_slot(server):
    a_agent = agent(server, "carol")
    runs = [start(server, "carol", a_agent, inputs=SLOW) for _ in range(3)]
    wait_for(server, "carol", runs[1], "running")
    assert control(server, "carol", runs[2], "cancel") == "cancelled"
    for execution_id in runs[:2]:
        control(server, "carol", execution_id, "cancel")
    # Her two slots are back: two new runs both start at once.
    again = [start(server, "carol", a_agent, inputs={"echo": {"tokens": 2}}) for _ in range(2)]
    for execution_id in again:
        assert wait_for(server, "carol", execution_id, "completed")["status"] == "completed"


def test_no_run_outlives_the_servers_longest_run_time(start_server):
    with start_server(CADRE_MAX_EXECUTION_SECONDS="1") as server:
        agent_id = agent(server, "dave")
        endless = start(server, "dave", agent_id, inputs=SLOW)
        paused = start(server, "dave", agent_id, inputs=SLOW, timeout=86400)
        wait_for(server, "dave", paused, "running", "failed")
        httpx.post(  # paused past its second, unless it already timed out (a 409 then)
            f"{server.url}/api/v1/executions/{paused}/pause", headers=headers(server, "dave")
        )
        for execution_id in (endless, paused):
            done = wait_for(server, "dave", execution_id, "completed", "failed", "cancelled")
            assert (done["status"], done["stop_reason"]) == ("failed", "timeout")
            assert "1 s" in done["error"]
