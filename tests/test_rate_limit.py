"""Rate limits per user (or per IP when anonymous), by role, with the seed's headers and body."""

from __future__ import annotations

import time

import pytest

from tests.conftest import TEST_REDIS_URL, Account, assert_problem, register


def test_authenticated_user_gets_429_with_headers_after_the_limit(make_client):
    client = make_client(rate_limit_authenticated="3/hour", rate_limit_anonymous="1000/hour")
    alice = register(client, "alice")
    replies = [client.get("/api/v1/agents", headers=alice.headers) for _ in range(4)]
    assert [r.status_code for r in replies] == [200, 200, 200, 429]
    assert [r.headers["x-ratelimit-remaining"] for r in replies[:3]] == ["2", "1", "0"]
    assert all(r.headers["x-ratelimit-limit"] == "3" for r in replies)
    reset = int(replies[0].headers["x-ratelimit-reset"])
    assert time.time() < reset <= time.time() + 3600 + 1
    body = assert_problem(replies[3], 429, "rate_limit_exceeded")
    retry_after = int(replies[3].headers["retry-after"])
    assert 0 < retry_after <= 3600
    assert body["retry_after"] == retry_after
    assert body["message"] == f"Rate limit exceeded. Try again in {retry_after} seconds."


def test_each_user_has_an_own_bucket(make_client):
    client = make_client(rate_limit_authenticated="2/hour")
    alice, bob = register(client, "alice"), register(client, "bob")
    for _ in range(2):
        assert client.get("/api/v1/agents", headers=alice.headers).status_code == 200
    assert client.get("/api/v1/agents", headers=alice.headers).status_code == 429
    assert client.get("/api/v1/agents", headers=bob.headers).status_code == 200


def test_premium_users_get_the_premium_limit(make_client):
    client = make_client(rate_limit_authenticated="1/hour", rate_limit_premium="5/hour")
    gold: Account = register(client, "gold", role="premium")
    gold_replies = [client.get("/api/v1/agents", headers=gold.headers) for _ in range(5)]
    assert {r.status_code for r in gold_replies} == {200}
    assert gold_replies[0].headers["x-ratelimit-limit"] == "5"


def test_anonymous_requests_are_limited_per_client_address(make_client):
    client = make_client(rate_limit_anonymous="2/hour")
    body = {"username": "nobody", "password": "whatever-1"}
    replies = [client.post("/api/v1/auth/login", json=body) for _ in range(3)]
    assert [r.status_code for r in replies] == [401, 401, 429]
    assert replies[0].headers["x-ratelimit-limit"] == "2"


def test_health_and_metrics_are_never_limited(make_client):
    client = make_client(rate_limit_anonymous="1/hour")
    assert {client.get("/health").status_code for _ in range(3)} == {200}
    assert {client.get("/metrics").status_code for _ in range(3)} == {200}


def test_bare_numbers_in_settings_mean_per_hour(make_settings):
    settings = make_settings(rate_limit_anonymous="100", rate_limit_premium=10000)
    assert settings.rate_limit_anonymous == "100/hour"
    assert settings.rate_limit_premium == "10000/hour"


def test_rate_limits_can_be_switched_off(make_client):
    client = make_client(rate_limit_anonymous="1/hour", rate_limit_enabled=False)
    body = {"username": "nobody", "password": "whatever-1"}
    assert {client.post("/api/v1/auth/login", json=body).status_code for _ in range(3)} == {401}


@pytest.mark.skipif(not TEST_REDIS_URL, reason="needs CADRE_TEST_REDIS_URL (set by .ci/run)")
def test_limits_kept_in_redis_are_shared_by_every_app_instance(make_client, make_settings):
    from starlette.testclient import TestClient

    from cadre.app import create_app

    first = make_client(rate_limit_anonymous="3/hour")
    body = {"username": "nobody", "password": "whatever-1"}
    assert first.post("/api/v1/auth/login", json=body).status_code == 401
    # A second app (think: another worker) over the same Redis sees the same bucket.
    with TestClient(create_app(make_settings(rate_limit_anonymous="3/hour"))) as second:
        assert second.post("/api/v1/auth/login", json=body).headers["x-ratelimit-remaining"] == "1"
