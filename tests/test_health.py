from __future__ import annotations

import time
from datetime import datetime

import peewee
import pytest

from scripts.live_server import free_port
from tests.conftest import TEST_REDIS_URL

SERVICES = {"database": "healthy", **({"redis": "healthy"} if TEST_REDIS_URL else {})}


def test_health_reports_healthy_database(client):
    reply = client.get("/health")
    assert reply.status_code == 200
    body = reply.json()
    assert body["status"] == "healthy"
    assert body["services"] == SERVICES
    assert body["version"] == "0.1.0"
    assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None


@pytest.mark.inprocess  # swaps the app's database for a broken one
def test_health_is_503_when_the_database_is_unreachable(client, tmp_path):
    from storage.db import database

    working = database.obj
    database.initialize(peewee.SqliteDatabase(str(tmp_path / "missing" / "dir" / "x.db")))
    try:
        reply = client.get("/health")
    finally:
        database.initialize(working)
    assert reply.status_code == 503
    assert reply.json()["status"] == "unhealthy"
    assert reply.json()["services"] == {**SERVICES, "database": "unhealthy"}


def test_health_reports_unreachable_redis_but_stays_healthy(make_client):
    """Without Redis, live events and control go through the database: still serving."""
    client = make_client(redis_url=f"redis://127.0.0.1:{free_port()}/0", rate_limit_enabled=False)
    reply = client.get("/health")
    assert reply.status_code == 200
    assert reply.json()["status"] == "healthy"
    assert reply.json()["services"] == {"database": "healthy", "redis": "unhealthy"}


def test_health_leaves_redis_out_without_it(make_client):
    client = make_client(redis_url=None)
    assert "redis" not in client.get("/health").json()["services"]


def test_health_needs_no_token(client):
    assert client.get("/health").status_code == 200


def test_api_prefixed_health_answers_like_health_without_a_token(client):
    import handlers.health

    assert handlers.health.get_api_health is handlers.health.get_health
    reply = client.get("/api/v1/health")
    assert reply.status_code == 200
    plain = client.get("/health").json()
    body = reply.json()
    live = {"timestamp", "workers"}  # read afresh on each request
    assert {k: v for k, v in body.items() if k not in live} == {
        k: v for k, v in plain.items() if k not in live
    }
    assert "x-ratelimit-limit" not in reply.headers


def test_health_counts_the_worker_running_executions(client):
    # SQLite: the server itself; PostgreSQL: the app's own worker, once it has registered
    # (tests/test_scale_out.py counts separate worker processes)
    deadline = time.monotonic() + 10
    while (workers := client.get("/health").json()["workers"]) == 0:
        assert time.monotonic() < deadline, "no worker registered"
        time.sleep(0.1)
    assert workers == 1
