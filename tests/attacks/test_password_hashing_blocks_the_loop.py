"""Hardening: argon2 runs off the event loop, so a burst of logins does not stall the server.

Eight logins leave at once; while they are being answered, ``/health`` is asked again and
again, one request after another. Every health check succeeds, and many more of them are
answered before the last login than there are logins: with hashing on the event loop, each
health check waited behind a hash, so only about one fitted between two logins. The test
counts answers in the order they arrive; it never measures a duration.
"""

from __future__ import annotations

import threading

import httpx

from tests.attacks.conftest import PASSWORD, Attacked

USERS = [f"burst{n}" for n in range(8)]


def test_health_is_answered_while_logins_hash(server: Attacked):
    for username in USERS:
        reply = httpx.post(
            f"{server.url}/api/v1/auth/register",
            json={"email": f"{username}@example.com", "username": username, "password": PASSWORD},
        )
        assert reply.status_code == 201, reply.text
    lock = threading.Lock()
    login_statuses: list[int] = []
    health_statuses: list[int] = []
    health_before_last_login: list[int] = []
    start = threading.Barrier(len(USERS) + 1)
    logins_done = threading.Event()

    def log_in(username: str) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            start.wait()
            reply = client.post(
                "/api/v1/auth/login", json={"username": username, "password": PASSWORD}
            )
        with lock:
            login_statuses.append(reply.status_code)
            if len(login_statuses) == len(USERS):
                health_before_last_login.append(len(health_statuses))
                logins_done.set()

    def check_health() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            client.get("/health")  # connected and warm before the logins leave
            start.wait()
            while not logins_done.is_set():
                status = client.get("/health").status_code
                with lock:
                    if not logins_done.is_set():
                        health_statuses.append(status)

    threads = [threading.Thread(target=log_in, args=(username,)) for username in USERS]
    threads.append(threading.Thread(target=check_health))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert login_statuses == [200] * len(USERS)
    assert set(health_statuses) <= {200}
    # on the loop: about one health check between two hashes (7 to 12 of them); off it,
    # hundreds
    assert health_before_last_login[0] > 4 * len(USERS), health_before_last_login
