"""Hardening: revoking a login (logout, refresh reuse) or disabling an account takes effect.

Access tokens of a revoked login, and of a disabled account, are refused within 5 s;
a disabled account's open WebSocket stream closes with 1008 and its slow execution ends
``cancelled``. Every check polls for the state with a deadline; none times the server.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.attacks.conftest import PASSWORD, Attacked, assert_refused

DEADLINE = 10.0  # the server promises 5 s; twice that before the test gives up
SLOW = {"echo": {"tokens": 600, "delay_ms": 100}}  # a minute: cancelled long before it ends


def pair(server: Attacked, username: str) -> dict:
    httpx.post(
        f"{server.url}/api/v1/auth/register",
        json={"email": f"{username}@example.com", "username": username, "password": PASSWORD},
    )
    reply = server.login(username)
    assert reply.status_code == 200, reply.text
    return reply.json()


def me(server: Attacked, access_token: str) -> httpx.Response:
    return httpx.get(
        f"{server.url}/api/v1/auth/me", headers={"Authorization": f"Bearer {access_token}"}
    )


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"still not {what} after {DEADLINE} s"
        time.sleep(0.2)


def refused_as(server: Attacked, access_token: str, error: str) -> Callable[[], bool]:
    def check() -> bool:
        reply = me(server, access_token)
        if reply.status_code == 200:
            return False
        assert_refused(reply, 401, error)
        return True

    return check


def test_logout_revokes_the_logins_access_token(server: Attacked):
    login = pair(server, "leaver")
    other = server.login("leaver").json()  # another login of the same account
    assert me(server, login["access_token"]).status_code == 200
    reply = httpx.post(
        f"{server.url}/api/v1/auth/logout",
        json={"refresh_token": login["refresh_token"]},
        headers={"Authorization": f"Bearer {login['access_token']}"},
    )
    assert reply.status_code == 204
    eventually(refused_as(server, login["access_token"], "token_revoked"), "revoked")
    assert me(server, other["access_token"]).status_code == 200  # the other login is untouched


def test_refresh_token_reuse_revokes_the_thiefs_and_the_victims_access_tokens(
    server: Attacked,
):
    victim = pair(server, "victim")
    stolen = victim["refresh_token"]
    thief = httpx.post(f"{server.url}/api/v1/auth/refresh", json={"refresh_token": stolen})
    assert thief.status_code == 200, thief.text
    thief_access = thief.json()["access_token"]
    assert me(server, thief_access).status_code == 200
    # the victim's client refreshes with the token the thief already used
    reuse = httpx.post(f"{server.url}/api/v1/auth/refresh", json={"refresh_token": stolen})
    assert_refused(reuse, 401, "refresh_token_reused")
    eventually(refused_as(server, thief_access, "token_revoked"), "revoked (thief)")
    eventually(refused_as(server, victim["access_token"], "token_revoked"), "revoked (victim)")


def disable(server: Attacked, username: str) -> None:
    """What an operator does today: there is no API to disable an account."""
    with sqlite3.connect(server.data_dir / "cadre.db") as database:
        database.execute("UPDATE user SET is_active = 0 WHERE username = ?", (username,))


def status_of(server: Attacked, execution_id: str) -> str:
    with sqlite3.connect(server.data_dir / "cadre.db") as database:
        return database.execute(
            "SELECT status FROM execution WHERE id = ?", (execution_id,)
        ).fetchone()[0]


def test_disabled_account_loses_its_stream_its_execution_and_its_token(server: Attacked):
    login = pair(server, "disabled")
    headers = {"Authorization": f"Bearer {login['access_token']}"}
    agent = httpx.post(f"{server.url}/api/v1/agents", json={"name": "slow"}, headers=headers)
    assert agent.status_code == 201, agent.text
    ws_url = server.url.replace("http://", "ws://")
    stream = f"{ws_url}/api/v1/agents/{agent.json()['id']}/stream?token={login['access_token']}"
    with connect(stream) as ws:
        ws.send(json.dumps({"task": "slow words", "inputs": SLOW}))
        execution_id = None
        while execution_id is None:  # the run is under way: its first events arrive
            event = json.loads(ws.recv(timeout=30))
            execution_id = event.get("execution_id")
        eventually(lambda: status_of(server, execution_id) == "running", "running")
        disable(server, "disabled")
        closing: list[dict] = []
        deadline = time.monotonic() + DEADLINE
        try:
            while True:
                remaining = deadline - time.monotonic()
                assert remaining > 0, "the stream stayed open"
                message = json.loads(ws.recv(timeout=remaining))
                if message["type"] == "protocol_error":
                    closing.append(message)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1008, closed
            assert "disabled" in closed.rcvd.reason
    assert closing and closing[-1]["error"] == "account_disabled", closing
    eventually(lambda: status_of(server, execution_id) == "cancelled", "cancelled")
    assert_refused(me(server, login["access_token"]), 401, "account_disabled")


def sse_until_end(server: Attacked, access_token: str, act: Callable[[], None]) -> list[dict]:
    """Follow a slow execution's SSE stream; ``act`` once it is live; the frames until it ends.

    Each frame is ``{"event": …, "data": …}``; the stream must end within ``DEADLINE``
    seconds of ``act``, although the execution would go on for a minute.
    """
    headers = {"Authorization": f"Bearer {access_token}"}
    agent = httpx.post(f"{server.url}/api/v1/agents", json={"name": "slow"}, headers=headers)
    assert agent.status_code == 201, agent.text
    started = httpx.post(
        f"{server.url}/api/v1/agents/{agent.json()['id']}/execute",
        json={"task": "slow words", "inputs": SLOW},
        headers=headers,
    )
    assert started.status_code == 200, started.text
    execution_id = started.json()["execution_id"]
    url = f"{server.url}/api/v1/executions/{execution_id}/events/stream"
    frames: list[dict] = []
    acted_at = None
    with httpx.stream("GET", url, headers=headers, timeout=DEADLINE) as stream:
        assert stream.status_code == 200
        frame: dict = {}
        for line in stream.iter_lines():
            if acted_at is None and any(f["event"] == "token" for f in frames):
                act()  # the run is streaming tokens: now the token stops being good
                acted_at = time.monotonic()
            if acted_at is not None:
                assert time.monotonic() - acted_at < DEADLINE, "the stream stayed open"
            if line == "":
                if "data" in frame:
                    frames.append({"event": frame.get("event"), "data": json.loads(frame["data"])})
                frame = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(": ")
                frame[key] = value
    assert acted_at is not None, frames
    assert time.monotonic() - acted_at < DEADLINE
    return frames


def assert_ends_with_problem(frames: list[dict], error: str) -> dict:
    """The last frame is an ``error`` event whose data is a ``protocol_error``; returns it."""
    last = frames[-1]
    assert last["event"] == "error", last
    assert last["data"]["type"] == "protocol_error"
    assert last["data"]["error"] == error, last
    assert last["data"]["message"]
    return last["data"]


def test_logout_ends_the_logins_sse_streams(server: Attacked):
    login = pair(server, "sse-leaver")

    def logout() -> None:
        reply = httpx.post(
            f"{server.url}/api/v1/auth/logout",
            json={"refresh_token": login["refresh_token"]},
            headers={"Authorization": f"Bearer {login['access_token']}"},
        )
        assert reply.status_code == 204

    frames = sse_until_end(server, login["access_token"], logout)
    assert_ends_with_problem(frames, "token_revoked")
    assert all(frame["data"]["type"] != "complete" for frame in frames)  # cut short


def test_disabled_account_loses_its_sse_streams(server: Attacked):
    login = pair(server, "sse-disabled")
    frames = sse_until_end(server, login["access_token"], lambda: disable(server, "sse-disabled"))
    assert_ends_with_problem(frames, "account_disabled")
    # the executor may cancel the run first: then its ``complete`` comes before the problem
    ends = [frame["data"].get("status") for frame in frames if frame["event"] == "complete"]
    assert ends in ([], ["cancelled"]), ends
