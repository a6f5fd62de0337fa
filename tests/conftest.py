"""Fixtures that build a real app per test, on SQLite or on PostgreSQL.

Set ``CADRE_TEST_DATABASE_URL=postgresql://…`` to run the whole suite on
PostgreSQL (each test then starts from an empty schema), and
``CADRE_TEST_REDIS_URL=redis://…`` to keep rate limits in Redis (flushed per app).
Set ``CADRE_TEST_LIVE=1`` to run the HTTP and stream tests against ``cadre serve``
on a real port (``tests/live.py``); tests marked ``inprocess`` need the app in the
test's own process (patched internals, the app object) and are skipped then.
With either setting, tests that would run just as they do on the default are
deselected (``pytest_collection_modifyitems``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peewee
import pytest
from starlette.testclient import TestClient

from cadre.app import create_app
from cadre.settings import Settings
from scripts.live_server import reset_postgres
from storage import db
from tests.live import live_client

TEST_DATABASE_URL = os.environ.get("CADRE_TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("CADRE_TEST_REDIS_URL")
LIVE = os.environ.get("CADRE_TEST_LIVE") == "1"
PASSWORD = "correct-horse-42"


# Fixtures through which a test's outcome depends on the backend (SQLite or PostgreSQL,
# Redis) or, for ``make_client``, on whether the app is a live server.
BACKEND_FIXTURES = frozenset({"make_settings", "database", "make_client"})
BACKEND_VARIABLES = ("TEST_DATABASE_URL", "TEST_REDIS_URL", "LIVE")


def _reads_backend(item: pytest.Item) -> bool:
    """The test runs differently on PostgreSQL + Redis: through a fixture, or its module
    reads the backend settings itself (attacks that start their own servers)."""
    if BACKEND_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    module = getattr(item, "module", None)
    return any(hasattr(module, name) for name in BACKEND_VARIABLES)


def _runs_live(item: pytest.Item) -> bool:
    """The test talks to the app through ``make_client``, which is a live server when LIVE."""
    module = getattr(item, "module", None)
    return "make_client" in getattr(item, "fixturenames", ()) or hasattr(module, "LIVE")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """CI runs the suite three times (SQLite; PostgreSQL + Redis; live servers). A test
    that would run the same way again is left to the pass where it differs: the
    PostgreSQL + Redis pass keeps the tests that read the backend, the live pass those
    whose app is the live server. Tests needing the app in-process skip the live pass."""
    if LIVE:
        keep = _runs_live
    elif TEST_DATABASE_URL or TEST_REDIS_URL:
        keep = _reads_backend
    else:
        return
    kept = [item for item in items if keep(item)]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if not keep(item)])
        items[:] = kept
    if not LIVE:
        return
    skip = pytest.mark.skip(reason="needs the app in the test's process (CADRE_TEST_LIVE=1)")
    for item in items:
        if "inprocess" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CADRE_* variable or .env file of the developer's leaks into a test."""
    for name in list(os.environ):
        if name.startswith("CADRE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "data_dir": tmp_path / "data",
            "secret_key": "test-secret-key-that-is-long-enough-for-every-hs-algorithm-0123456789",
            "validate_responses": True,
            "rate_limit_anonymous": "100000/hour",
            "rate_limit_authenticated": "100000/hour",
            "rate_limit_premium": "100000/hour",
            # a test app stopping with runs left hands them back soon (PostgreSQL's queue)
            "shutdown_grace_seconds": 2.0,
        }
        if TEST_DATABASE_URL:
            values["database_url"] = TEST_DATABASE_URL
        if TEST_REDIS_URL:
            values["redis_url"] = TEST_REDIS_URL
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def database(settings: Settings) -> Iterator[peewee.Database]:
    """The settings' database, empty and migrated, for tests without the HTTP app."""
    if TEST_DATABASE_URL:
        reset_postgres(TEST_DATABASE_URL)
    opened = db.open_database(settings.effective_database_url)
    db.migrate(opened)
    yield opened
    if not opened.is_closed():
        opened.close()


@pytest.fixture
def make_client(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., TestClient]]:
    """Build an app with some settings changed and a client for it (a live one, if LIVE)."""
    opened: list[Any] = []

    def make(**overrides: object) -> TestClient:
        if TEST_DATABASE_URL:
            reset_postgres(TEST_DATABASE_URL)
        if TEST_REDIS_URL:
            import redis

            with redis.Redis.from_url(TEST_REDIS_URL) as connection:
                connection.flushdb()
        settings = make_settings(**overrides)
        if LIVE:
            live = live_client(settings)
            client = live.__enter__()
            opened.append(live)
            # The test's own process reads and writes the server's database too.
            db.open_database(settings.effective_database_url)
            return client
        client = TestClient(create_app(settings))
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for context in reversed(opened):
        context.__exit__(None, None, None)
    from storage.db import database

    if isinstance(database.obj, peewee.Database) and not database.obj.is_closed():
        database.obj.close()


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@dataclass
class Account:
    id: str
    username: str
    email: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def register(client: TestClient, username: str, *, role: str = "user") -> Account:
    """Register (and, for other roles, promote) an account, then log it in."""
    email = f"{username}@example.com"
    reply = client.post(
        "/api/v1/auth/register",
        json={"email": email, "username": username, "password": PASSWORD},
    )
    assert reply.status_code == 201, reply.text
    user_id = reply.json()["id"]
    if role != "user":
        from storage.users import User

        User.update(role=role).where(User.id == user_id).execute()
    tokens = client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    return Account(user_id, username, email, PASSWORD, body["access_token"], body["refresh_token"])


@pytest.fixture
def alice(client: TestClient) -> Account:
    return register(client, "alice")


@pytest.fixture
def bob(client: TestClient) -> Account:
    return register(client, "bob")


@pytest.fixture
def admin(client: TestClient) -> Account:
    return register(client, "root", role="admin")


def assert_problem(reply, status: int, error: str | None = None) -> dict:
    """The reply is a complete problem+json body with this status (and error code)."""
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    body = reply.json()
    for member in (
        "type",
        "title",
        "status",
        "detail",
        "error",
        "message",
        "details",
        "request_id",
    ):
        assert member in body, f"problem body lacks {member}: {body}"
    assert body["status"] == status
    assert body["request_id"] == reply.headers["x-request-id"]
    if error is not None:
        assert body["error"] == error, body
    return body


def wait_for_status(client, account: Account, execution_id: str, statuses, timeout: float = 10.0):
    """Poll an execution until its status is one of ``statuses``; returns its body."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        reply = client.get(f"/api/v1/executions/{execution_id}", headers=account.headers)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        if body["status"] in statuses:
            return body
        assert time.monotonic() < deadline, f"still {body['status']} after {timeout} s"
        time.sleep(0.02)


def execute(client, account: Account, agent: str, task: str = "hello there world", **body):
    reply = client.post(
        f"/api/v1/agents/{agent}/execute", json={"task": task, **body}, headers=account.headers
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["execution_id"]


def seqs_of(messages: list[dict]) -> list[int]:
    """Every event number the messages carry: a coalesced token frame carries
    ``first_seq`` to ``seq`` (asyncapi.yaml)."""
    return [
        n for m in messages if "seq" in m for n in range(m.get("first_seq", m["seq"]), m["seq"] + 1)
    ]


def joined_tokens(messages: list[dict]) -> str:
    return "".join(m["content"] for m in messages if m.get("type") == "token")


def events_of(client, account: Account, execution_id: str, after: int = 0) -> list[dict]:
    from tests.asyncapi_check import check_server_message

    reply = client.get(
        f"/api/v1/executions/{execution_id}/events?after={after}", headers=account.headers
    )
    assert reply.status_code == 200, reply.text
    return [check_server_message(event) for event in reply.json()["events"]]
