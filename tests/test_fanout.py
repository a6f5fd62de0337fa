"""Two live ``cadre serve`` processes sharing PostgreSQL and Redis (issue 10): a run held
by one is followed and controlled through the other, live, and survives Redis going away.

Skipped unless ``CADRE_TEST_DATABASE_URL`` (PostgreSQL) and ``CADRE_TEST_REDIS_URL`` are
set; these tests start their own servers, so the ``CADRE_TEST_LIVE=1`` pass skips them.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from websockets.sync.client import ClientConnection, connect

from scripts.live_server import free_port, live_server, login_token, reset_postgres
from tests.asyncapi_check import check_server_message
from tests.conftest import LIVE, TEST_DATABASE_URL, TEST_REDIS_URL, joined_tokens, seqs_of
from tests.live import assert_no_traceback

pytestmark = pytest.mark.skipif(
    LIVE
    or not TEST_REDIS_URL
    or not (TEST_DATABASE_URL or "").startswith(("postgres://", "postgresql://")),
    reason="needs CADRE_TEST_DATABASE_URL=postgresql://… and CADRE_TEST_REDIS_URL "
    "(and runs its own servers: not again in the CADRE_TEST_LIVE=1 pass)",
)

SECRET = "fanout-test-secret-key-long-enough-for-hs256-0123456789abcdef"
TERMINAL = ("completed", "failed", "cancelled")


@dataclass
class Pair:
    a: str  # base URLs: the run is started on A, followed and controlled through B
    b: str
    token: str
    logs: list[Path]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def execute(self, tokens: int, delay_ms: int) -> str:
        reply = httpx.post(
            f"{self.a}/api/v1/agents/coder/execute",
            json={"task": "go on", "inputs": {"echo": {"tokens": tokens, "delay_ms": delay_ms}}},
            headers=self.headers,
        )
        assert reply.status_code == 200, reply.text
        return reply.json()["execution_id"]

    def stored_events(self, execution_id: str) -> list[dict]:
        reply = httpx.get(
            f"{self.a}/api/v1/executions/{execution_id}/events?limit=1000", headers=self.headers
        )
        assert reply.status_code == 200, reply.text
        return reply.json()["events"]

    def socket(self, execution_id: str, after: int = 0) -> ClientConnection:
        url = "ws" + self.b.removeprefix("http")
        path = f"/api/v1/executions/{execution_id}/stream?after={after}&token={self.token}"
        return connect(url + path, open_timeout=10)


@contextlib.contextmanager
def two_servers(tmp_path: Path, redis_url: str) -> Iterator[Pair]:
    assert TEST_DATABASE_URL is not None
    reset_postgres(TEST_DATABASE_URL)
    with redis.Redis.from_url(redis_url) as connection:
        connection.flushdb()
    data = tmp_path / "data"
    data.mkdir()
    env = {
        "CADRE_DATABASE_URL": TEST_DATABASE_URL,
        "CADRE_REDIS_URL": redis_url,
        "CADRE_SECRET_KEY": SECRET,
        "CADRE_RATE_LIMIT_ENABLED": "false",
    }
    with live_server(data, **env) as a, live_server(data, **env) as b:
        token = login_token(a.url)
        reply = httpx.post(
            f"{a.url}/api/v1/agents",
            json={"name": "coder"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert reply.status_code == 201, reply.text
        yield Pair(a.url, b.url, token, [a.log_path, b.log_path])
    for log in (a.log_path, b.log_path):
        assert_no_traceback(log)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    assert TEST_REDIS_URL is not None
    with two_servers(tmp_path, TEST_REDIS_URL) as servers:
        yield servers


def receive(ws: ClientConnection) -> dict:
    return check_server_message(json.loads(ws.recv(timeout=30)))


def until_complete(ws: ClientConnection) -> list[dict]:
    messages = []
    while True:
        messages.append(receive(ws))
        if messages[-1]["type"] == "complete":
            return messages


def assert_every_event_once_in_order(seen: list[dict], stored: list[dict]) -> None:
    """Every stored event once, in order: a coalesced token frame stands for the tokens
    ``first_seq`` to ``seq`` (asyncapi.yaml), their contents joined."""
    assert seqs_of(seen) == [e["seq"] for e in stored] == list(range(1, len(stored) + 1))
    assert [e["type"] for e in seen if e["type"] != "token"] == [
        e["type"] for e in stored if e["type"] != "token"
    ]
    assert joined_tokens(seen) == joined_tokens(stored)


def sse_events(response: httpx.Response, limit: int | None = None) -> list[dict]:
    events, frame = [], {}
    for line in response.iter_lines():
        if line == "":
            if "data" in frame and "id" in frame:
                event = check_server_message(json.loads(frame["data"]))
                assert frame["id"] == str(event["seq"])
                events.append(event)
                if event["type"] == "complete" or len(events) == limit:
                    return events
            frame = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            frame[key] = value
    return events


class TestFollowingAnotherProcess:
    def test_websocket_on_b_sees_every_event_of_a_run_on_a_even_across_a_reconnect(
        self, pair: Pair
    ):
        execution_id = pair.execute(tokens=80, delay_ms=20)
        with pair.socket(execution_id) as ws:
            first = [receive(ws) for _ in range(12)]
        assert first[-1]["type"] == "token"  # cut mid-stream, while it runs on A
        with pair.socket(execution_id, after=first[-1]["seq"]) as ws:
            rest = until_complete(ws)
        assert rest[-1]["status"] == "completed"
        assert_every_event_once_in_order(first + rest, pair.stored_events(execution_id))

    def test_sse_on_b_resumes_with_last_event_id_without_gaps_or_repeats(self, pair: Pair):
        execution_id = pair.execute(tokens=80, delay_ms=20)
        url = f"{pair.b}/api/v1/executions/{execution_id}/events/stream"
        with httpx.stream("GET", url, headers=pair.headers, timeout=30) as response:
            first = sse_events(response, limit=12)
        assert first[-1]["type"] == "token"
        headers = {**pair.headers, "Last-Event-ID": str(first[-1]["seq"])}
        with httpx.stream("GET", url, headers=headers, timeout=30) as response:
            rest = sse_events(response)
        assert rest[-1]["type"] == "complete"
        assert_every_event_once_in_order(first + rest, pair.stored_events(execution_id))


class TestControlThroughAnotherProcess:
    def test_pause_resume_and_cancel_sent_to_b_stop_the_run_on_a_within_a_few_tokens(
        self, pair: Pair
    ):
        """At 50 ms a token, a pause left for A's 1-second heartbeat lets up to 20 tokens
        through (a lucky beat, fewer); through Redis each of three gets in before 4 more."""
        execution_id = pair.execute(tokens=400, delay_ms=50)
        seen: list[dict] = []

        def tokens() -> int:
            return len(seqs_of([e for e in seen if e["type"] == "token"]))

        with pair.socket(execution_id) as ws:
            for _ in range(3):
                wanted = tokens() + 5
                while tokens() < wanted:
                    seen.append(receive(ws))
                asked_at = seen[-1]["seq"]
                ws.send(json.dumps({"type": "pause"}))
                while seen[-1].get("status") != "paused":
                    seen.append(receive(ws))
                streamed = seqs_of([e for e in seen if e["type"] == "token"])
                late = [n for n in streamed if n > asked_at]
                assert len(late) < 4, f"{len(late)} tokens came after the pause was asked"
                reply = httpx.post(
                    f"{pair.b}/api/v1/executions/{execution_id}/resume", headers=pair.headers
                )
                assert reply.status_code == 200, reply.text
            reply = httpx.post(
                f"{pair.b}/api/v1/executions/{execution_id}/cancel", headers=pair.headers
            )
            assert reply.status_code == 200, reply.text
            seen += until_complete(ws)
        assert seen[-1]["status"] == "cancelled"
        assert tokens() < 100  # stopped long before its 400
        assert_every_event_once_in_order(seen, pair.stored_events(execution_id))


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """A Redis of this test's own, which it may stop (the shared one stays up)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("needs redis-server on PATH")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        with contextlib.suppress(redis.RedisError), redis.Redis.from_url(url) as connection:
            if connection.ping():
                break
        time.sleep(0.05)
    yield url, process
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=10)


class TestRedisGoingAway:
    def test_redis_stopped_mid_run_loses_no_event_and_fails_no_run(
        self, tmp_path: Path, own_redis: tuple[str, subprocess.Popen]
    ):
        url, process = own_redis
        with two_servers(tmp_path, url) as pair:
            execution_id = pair.execute(tokens=80, delay_ms=20)
            with pair.socket(execution_id) as ws:
                seen = [receive(ws) for _ in range(10)]
                assert seen[-1]["type"] == "token"
                process.terminate()
                process.wait(timeout=10)
                seen += until_complete(ws)
            assert seen[-1]["status"] == "completed"
            assert_every_event_once_in_order(seen, pair.stored_events(execution_id))
            health = httpx.get(f"{pair.b}/health")
            assert health.status_code == 200
            assert health.json()["services"] == {"database": "healthy", "redis": "unhealthy"}
