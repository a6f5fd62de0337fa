"""Helpers shared by the seed 002 tests: submitting jobs and waiting for them."""

from __future__ import annotations

import time

from tests.conftest import Account

TERMINAL = ("COMPLETED", "FAILED", "CANCELED")


def slow(tokens: int = 400, delay_ms: int = 25) -> dict:
    """Worker inputs that keep an echo worker busy for tokens * delay_ms."""
    return {"echo": {"tokens": tokens, "delay_ms": delay_ms}}


def submit(client, account: Account, task: str = "hello there world", **body) -> dict:
    body = {"worker_count": 1, "depth": 0, **body}
    reply = client.post(
        "/api/v1/jobs/submit", json={"task_description": task, **body}, headers=account.headers
    )
    assert reply.status_code == 201, reply.text
    return reply.json()


def get_job(client, account: Account, job_id: str) -> dict:
    reply = client.get(f"/api/v1/jobs/{job_id}", headers=account.headers)
    assert reply.status_code == 200, reply.text
    return reply.json()


def wait_for_job(client, account: Account, job_id: str, statuses, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = get_job(client, account, job_id)
        if body["status"] in statuses:
            return body
        assert time.monotonic() < deadline, f"job still {body['status']} after {timeout} s"
        time.sleep(0.05)


def wait_until(predicate, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.05)


def usage_at(client, account: Account, depth: int) -> dict:
    reply = client.get("/api/v1/resources/usage", headers=account.headers)
    assert reply.status_code == 200, reply.text
    return next(row for row in reply.json()["usage"] if row["depth"] == depth)
