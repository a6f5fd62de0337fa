"""Hardening: password guessing is limited per account, whatever address the guesses come from.

The per-address limit stays, keyed by the client address uvicorn settles on: the TCP peer,
or what ``X-Forwarded-For`` says when the peer is one of ``CADRE_TRUSTED_PROXIES``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.attacks.conftest import PASSWORD, Attacked, assert_refused, serve
from tests.conftest import TEST_REDIS_URL

WRONG = "wrong-pass-99"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attacked]:
    """Behind a trusted proxy on 127.0.0.1, with a small per-address limit."""
    with serve(
        tmp_path_factory.mktemp("brute"),
        CADRE_RATE_LIMIT_ENABLED="true",
        CADRE_RATE_LIMIT_ANONYMOUS="3/hour",
        CADRE_TRUSTED_PROXIES="127.0.0.1,::1",
    ) as attacked:
        yield attacked


def login(server: Attacked, username: str, password: str, address: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/v1/auth/login",
        json={"username": username, "password": password},
        headers={"X-Forwarded-For": address},
        timeout=30,  # 20 simultaneous logins queue for 2 argon2 threads on a busy machine
    )


def grant(server: Attacked, username: str, password: str, address: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/v1/auth/token",
        data={"grant_type": "password", "username": username, "password": password},
        headers={"X-Forwarded-For": address},
    )


def register(server: Attacked, username: str, address: str) -> None:
    reply = httpx.post(
        f"{server.url}/api/v1/auth/register",
        json={"email": f"{username}@example.com", "username": username, "password": PASSWORD},
        headers={"X-Forwarded-For": address},
    )
    assert reply.status_code == 201, reply.text


def assert_locked_out(reply: httpx.Response) -> None:
    body = assert_refused(reply, 429, "too_many_login_attempts")
    retry_after = int(reply.headers["retry-after"])
    assert 0 < retry_after <= 300
    assert body["retry_after"] == retry_after


def test_guesses_from_two_addresses_lock_the_account_even_for_the_right_password(
    server: Attacked,
):
    register(server, "target", "198.51.100.1")
    register(server, "bystander", "198.51.100.2")
    for _ in range(3):  # the first address spends its whole per-address allowance
        assert_refused(login(server, "target", WRONG, "203.0.113.1"), 401, "invalid_credentials")
    # the per-address limit holds, keyed by the forwarded address
    assert_refused(login(server, "target", WRONG, "203.0.113.1"), 429, "rate_limit_exceeded")
    for _ in range(2):  # a second address goes on guessing
        assert_refused(login(server, "target", WRONG, "203.0.113.2"), 401, "invalid_credentials")
    # five failures: locked, whoever asks and whatever they send
    assert_locked_out(login(server, "target", PASSWORD, "203.0.113.3"))
    assert_locked_out(login(server, "TARGET@example.com", PASSWORD, "203.0.113.4"))
    assert_locked_out(grant(server, "target", PASSWORD, "203.0.113.5"))
    # other accounts are unaffected
    assert login(server, "bystander", PASSWORD, "203.0.113.6").status_code == 200


def test_unknown_accounts_are_throttled_the_same_way(server: Attacked):
    register(server, "known", "198.51.100.3")
    replies = {}
    for name in ("known", "nobody-here"):
        for attempt in range(5):
            reply = login(server, name, WRONG, f"203.0.114.{attempt}")
            assert_refused(reply, 401, "invalid_credentials")
        replies[name] = login(server, name, WRONG, "203.0.114.9")
        assert_locked_out(replies[name])
    known, unknown = (replies[name].json() for name in ("known", "nobody-here"))
    for body in (known, unknown):
        body.pop("request_id")
        body.pop("retry_after")
        body.pop("message")  # names the seconds left, which may differ by one
        body.pop("detail")
    assert known == unknown


def test_success_before_the_limit_clears_the_count(server: Attacked):
    register(server, "forgetful", "198.51.100.4")
    for attempt in range(4):
        assert_refused(login(server, "forgetful", WRONG, f"203.0.115.{attempt}"), 401)
    assert login(server, "forgetful", PASSWORD, "203.0.115.10").status_code == 200
    for attempt in range(4):
        assert_refused(login(server, "forgetful", WRONG, f"203.0.115.{20 + attempt}"), 401)
    assert login(server, "forgetful", PASSWORD, "203.0.115.30").status_code == 200


def test_forwarded_addresses_from_an_untrusted_peer_are_ignored(start_server):
    with start_server(
        CADRE_RATE_LIMIT_ENABLED="true", CADRE_RATE_LIMIT_ANONYMOUS="7/hour"
    ) as untrusted:
        register(untrusted, "target", "198.51.100.1")  # the peer's first request
        for attempt in range(5):  # each claims another address: all are 127.0.0.1's
            reply = login(untrusted, "target", WRONG, f"203.0.113.{attempt}")
            assert_refused(reply, 401, "invalid_credentials")
        assert_locked_out(login(untrusted, "target", PASSWORD, "203.0.113.8"))  # request 7
        # one bucket took all seven requests, whatever addresses they claimed
        reply = login(untrusted, "target", PASSWORD, "203.0.113.9")
        assert_refused(reply, 429, "rate_limit_exceeded")


def at_once(count: int, send: Callable[[int], httpx.Response]) -> list[httpx.Response]:
    """``count`` requests released together (each thread waits for the others first)."""
    barrier = threading.Barrier(count)

    def one(index: int) -> httpx.Response:
        barrier.wait()
        return send(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_simultaneous_right_passwords_are_never_throttled_and_guesses_stay_bounded(
    start_server, storage: str
):
    """20 right passwords at once all log in; 20 wrong ones get at most 5 checks (401)."""
    if storage == "redis" and not TEST_REDIS_URL:
        pytest.skip("CADRE_TEST_REDIS_URL is not set")
    window = 6
    redis_url = TEST_REDIS_URL if storage == "redis" else ""
    with start_server(CADRE_LOGIN_LOCKOUT_SECONDS=str(window), CADRE_REDIS_URL=redis_url) as server:
        register(server, "popular", "198.51.100.1")
        right = at_once(20, lambda i: login(server, "popular", PASSWORD, f"203.0.113.{i}"))
        assert [reply.status_code for reply in right] == [200] * 20, [r.text for r in right]
        wrong = at_once(20, lambda i: login(server, "popular", WRONG, f"203.0.113.{i}"))
        statuses = sorted(reply.status_code for reply in wrong)
        assert statuses.count(401) <= 5 and statuses.count(401) + statuses.count(429) == 20
        assert statuses.count(401) >= 1, statuses  # the guesses were checked, then refused
        for reply in wrong:
            if reply.status_code == 429:
                assert_locked_out(reply)
        locked = login(server, "popular", PASSWORD, "203.0.113.99")
        assert_locked_out(locked)
        time.sleep(int(locked.headers["retry-after"]) + 0.5)  # the window ends: unlocked
        assert login(server, "popular", PASSWORD, "203.0.113.100").status_code == 200
