"""Two API processes and two workers on one PostgreSQL and one Redis: 200 executions
submitted through both APIs all end, each completed exactly once and no provider call
billed twice, although one worker is SIGKILLed mid-run; subscribers streaming through
the other API see every event in order; one rate limit holds across both APIs."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from scripts.live_server import Server, live_server, live_worker, login_token, reset_postgres
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL

pytestmark = [
    pytest.mark.skipif(
        not ((TEST_DATABASE_URL or "").startswith("postgres") and TEST_REDIS_URL),
        reason="needs CADRE_TEST_DATABASE_URL=postgresql://… and CADRE_TEST_REDIS_URL",
    ),
    pytest.mark.inprocess,  # starts its own processes: once, not again in the live pass
]

RUNS = 200
TOKENS = 12
STREAMED = 12  # executions followed through the API that did not accept them


def _env(**more: str) -> dict[str, str]:
    return {
        "CADRE_DATABASE_URL": TEST_DATABASE_URL or "",
        "CADRE_REDIS_URL": TEST_REDIS_URL or "",
        "CADRE_RATE_LIMIT_AUTHENTICATED": "100000/hour",
        "CADRE_RATE_LIMIT_ANONYMOUS": "100000/hour",
        **more,
    }


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[list[Server], list]]:
    """Two ``cadre serve --no-worker`` and two ``cadre worker`` processes."""
    reset_postgres(TEST_DATABASE_URL or "")
    import redis

    redis.Redis.from_url(TEST_REDIS_URL or "").flushdb()
    data = tmp_path / "data"
    workers_env = _env(CADRE_MAX_CONCURRENT_EXECUTIONS_PER_USER="16")
    with ExitStack() as stack:
        apis = [stack.enter_context(live_server(data, "--no-worker", **_env())) for _ in range(2)]
        workers = [stack.enter_context(live_worker(data, **workers_env)) for _ in range(2)]
        yield apis, workers


def _stream(server: Server, headers: dict[str, str], run_id: str, seen: list[int]) -> None:
    """Follow one execution's event stream (SSE) to its end, noting each event's seq."""
    url = f"{server.url}/api/v1/executions/{run_id}/events/stream"
    with httpx.stream("GET", url, headers=headers, timeout=120) as reply:
        for line in reply.iter_lines():
            if line.startswith("id:"):
                seen.append(int(line.removeprefix("id:")))
            elif line == "event: complete":
                return


def _all_costs(server: Server, headers: dict[str, str]) -> list[dict]:
    records, cursor = [], None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{server.url}/api/v1/costs", params=params, headers=headers).json()
        records += page["costs"]
        cursor = page.get("next_cursor")
        if not cursor:
            return records


def _both_workers_busy_after(completed: int) -> bool:
    """At least ``completed`` executions ended and two workers each hold a running one."""
    from playhouse.db_url import connect

    db = connect(TEST_DATABASE_URL or "")
    try:
        done = db.execute_sql("SELECT count(*) FROM execution WHERE status = 'completed'")
        holders = db.execute_sql(
            "SELECT count(DISTINCT lease_owner) FROM execution WHERE status = 'running'"
        )
        return done.fetchone()[0] >= completed and holders.fetchone()[0] >= 2
    finally:
        db.close()


def test_two_apis_and_two_workers_finish_every_execution_once_across_a_killed_worker(cluster):
    apis, workers = cluster
    token = login_token(apis[0].url)
    headers = {"Authorization": f"Bearer {token}"}
    httpx.post(f"{apis[0].url}/api/v1/agents", json={"name": "echo"}, headers=headers)
    body = {"task": "count", "inputs": {"echo": {"tokens": TOKENS, "delay_ms": 25}}}
    ids: list[tuple[int, str]] = []  # (the API that accepted it, its id)
    streams: list[tuple[str, list[int], threading.Thread]] = []
    with httpx.Client(timeout=30) as client:
        for n in range(RUNS):
            accepted = n % 2
            reply = client.post(
                f"{apis[accepted].url}/api/v1/agents/echo/execute", json=body, headers=headers
            )
            assert reply.status_code == 200, reply.text
            run_id = reply.json()["execution_id"]
            ids.append((accepted, run_id))
            if n % (RUNS // STREAMED) == 0 and len(streams) < STREAMED:
                seen: list[int] = []
                other = apis[1 - accepted]
                thread = threading.Thread(target=_stream, args=(other, headers, run_id, seen))
                thread.start()
                streams.append((run_id, seen, thread))

        def statuses() -> list[str]:
            return [
                client.get(f"{apis[0].url}/api/v1/runs/{run_id}", headers=headers).json()["status"]
                for _, run_id in ids
            ]

        # SIGKILL one worker once some executions are done and both workers hold others
        # under way (read from the database: the API does not say who holds a run).
        deadline = time.monotonic() + 60
        while not _both_workers_busy_after(RUNS // 5):
            assert time.monotonic() < deadline, "the workers made no progress"
            time.sleep(0.05)
        os.kill(workers[0].pid, signal.SIGKILL)
        workers[0].wait()

        deadline = time.monotonic() + 90
        now = statuses()
        while not set(now) <= {"completed", "failed", "cancelled"}:
            assert time.monotonic() < deadline, f"stuck: {sorted(set(now))}"
            time.sleep(0.5)
            now = statuses()
        assert now == ["completed"] * RUNS

        costs = _all_costs(apis[1], headers)
        taken_over = 0
        for accepted, run_id in ids:
            events = client.get(
                f"{apis[1 - accepted].url}/api/v1/executions/{run_id}/events", headers=headers
            ).json()["events"]
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
            assert [e["type"] for e in events].count("complete") == 1
            queued = [e for e in events if e["type"] == "status" and e["status"] == "queued"]
            taken_over += len(queued) > 1  # queued again after its worker died
            records = [r for r in costs if r["execution_id"] == run_id]
            # the full answer billed once; at most one more record: the answer the kill
            # cut short, billed once by the worker that took the execution over
            assert [r["completion_tokens"] for r in records].count(TOKENS) == 1
            assert len(records) in (1, 2)
            run = client.get(f"{apis[0].url}/api/v1/runs/{run_id}", headers=headers).json()
            assert run["usage"]["completion_tokens"] == sum(r["completion_tokens"] for r in records)
        assert taken_over  # the kill did leave runs to take over
        for run_id, seen, thread in streams:
            thread.join(timeout=30)
            stored = client.get(
                f"{apis[0].url}/api/v1/executions/{run_id}/events", headers=headers
            ).json()["events"]
            assert seen == [e["seq"] for e in stored]


def test_a_rate_limit_of_n_allows_exactly_n_requests_across_two_apis(tmp_path):
    reset_postgres(TEST_DATABASE_URL or "")
    import redis

    redis.Redis.from_url(TEST_REDIS_URL or "").flushdb()
    limit = 7
    env = _env(CADRE_RATE_LIMIT_AUTHENTICATED=f"{limit}/hour")
    with ExitStack() as stack:
        apis = [
            stack.enter_context(live_server(tmp_path / "data", "--no-worker", **env))
            for _ in range(2)
        ]
        headers = {"Authorization": f"Bearer {login_token(apis[0].url)}"}
        codes = [
            httpx.get(f"{apis[n % 2].url}/api/v1/agents", headers=headers).status_code
            for n in range(2 * limit)
        ]
    assert codes.count(200) == limit
    assert codes.count(429) == limit
