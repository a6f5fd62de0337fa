"""Hardening: on PostgreSQL a request waiting in the database stalls no one else.

A row lock held by another connection makes one user's ``PATCH`` wait inside
PostgreSQL; meanwhile ``/health`` and another user's ``GET /api/v1/agents`` answer
at once, because database calls run in worker threads there (``cadre.db_calls``).
Needs ``CADRE_TEST_DATABASE_URL``; SQLite runs them inline, by design.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from playhouse.db_url import connect

from scripts.live_server import reset_postgres
from tests.attacks.conftest import PASSWORD, Attacked
from tests.conftest import TEST_DATABASE_URL

pytestmark = pytest.mark.skipif(
    not TEST_DATABASE_URL, reason="needs PostgreSQL (CADRE_TEST_DATABASE_URL)"
)

QUICK = 2.0  # seconds: a reply slower than this waited for the locked request


def token(server: Attacked, username: str) -> dict[str, str]:
    httpx.post(
        f"{server.url}/api/v1/auth/register",
        json={"email": f"{username}@example.com", "username": username, "password": PASSWORD},
    )
    return server.headers(username)


def waiting_on_a_lock(database) -> bool:
    cursor = database.execute_sql(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    )
    return cursor.fetchone()[0] > 0


def test_a_write_waiting_for_a_row_lock_stalls_neither_health_nor_other_users(start_server):
    reset_postgres(TEST_DATABASE_URL)
    with start_server(CADRE_DATABASE_URL=TEST_DATABASE_URL) as server:
        alice, bob = token(server, "alice"), token(server, "bob")
        agent = httpx.post(f"{server.url}/api/v1/agents", json={"name": "locked"}, headers=alice)
        assert agent.status_code == 201, agent.text
        agent_id = agent.json()["id"]
        holder = connect(TEST_DATABASE_URL)
        replies: list[httpx.Response] = []
        try:
            with holder.atomic():
                holder.execute_sql("SELECT id FROM agent WHERE id = %s FOR UPDATE", (agent_id,))
                patch = threading.Thread(
                    target=lambda: replies.append(
                        httpx.patch(
                            f"{server.url}/api/v1/agents/{agent_id}",
                            json={"tags": ["after-the-lock"]},
                            headers=alice,
                            timeout=60,
                        )
                    )
                )
                patch.start()
                deadline = time.monotonic() + 10
                while not waiting_on_a_lock(holder):
                    assert not replies, replies[0].text  # it should be waiting, not answered
                    assert time.monotonic() < deadline, "the PATCH never reached the lock"
                    time.sleep(0.05)
                for _ in range(3):  # the PATCH is still waiting in PostgreSQL
                    started = time.monotonic()
                    health = httpx.get(f"{server.url}/health", timeout=QUICK)
                    listing = httpx.get(f"{server.url}/api/v1/agents", headers=bob, timeout=QUICK)
                    assert time.monotonic() - started < QUICK
                    assert health.status_code == 200, health.text
                    assert listing.status_code == 200 and listing.json()["total"] == 0
                assert not replies and waiting_on_a_lock(holder)
        finally:
            holder.close()  # the transaction ended above: the lock is released
        patch.join(timeout=30)
        assert replies and replies[0].status_code == 200, replies
        assert replies[0].json()["tags"] == ["after-the-lock"]
