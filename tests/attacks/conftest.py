"""Attacks on a real ``cadre serve`` subprocess on a loopback port.

Each module shares one server where its tests do not interfere (``server``);
``start_server`` runs another with different settings. Accounts are made over
HTTP, admins with ``cadre create-user --admin`` against the same data directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from scripts.live_server import live_server, login_token

SECRET_KEY = "attack-suite-secret-key-long-enough-for-every-hs-algorithm-0123"
PASSWORD = "attack-pass-42"
BASE_ENV = {
    "CADRE_SECRET_KEY": SECRET_KEY,
    "CADRE_RATE_LIMIT_ENABLED": "false",
    "CADRE_DATABASE_URL": "",
    "CADRE_REDIS_URL": "",
}


@dataclass
class Attacked:
    """A running server: its URL, data directory, log file, environment and process."""

    url: str
    data_dir: Path
    log: Path
    env: dict[str, str]
    process: subprocess.Popen | None = None

    def token(self, username: str = "mallory") -> str:
        return login_token(self.url, username, PASSWORD)

    def headers(self, username: str = "mallory") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(username)}"}

    def create_admin(self, username: str) -> None:
        """An admin account, made as an operator would: ``cadre create-user --admin``."""
        subprocess.run(
            [
                *(sys.executable, "-m", "cadre.cli", "create-user", "--admin"),
                *("--email", f"{username}@example.com", "--username", username),
                *("--password", PASSWORD),
            ],
            env={**os.environ, "CADRE_DATA_DIR": str(self.data_dir), **self.env},
            check=True,
            capture_output=True,
        )

    def login(self, username: str, **body: object) -> httpx.Response:
        return httpx.post(
            f"{self.url}/api/v1/auth/login",
            json={"username": username, "password": PASSWORD, **body},
        )


@contextmanager
def serve(root: Path, **env: str) -> Iterator[Attacked]:
    data_dir = root / "data"
    environment = {**BASE_ENV, **env}
    with live_server(data_dir, **environment) as server:
        port = server.url.rsplit(":", 1)[1]
        yield Attacked(
            server.url, data_dir, root / f"server-{port}.log", environment, server.process
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attacked]:
    """One server with the default limits, shared by a module's tests."""
    with serve(tmp_path_factory.mktemp("attacked")) as attacked:
        yield attacked


@pytest.fixture
def start_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., AbstractContextManager[Attacked]]:
    """Start a server of one's own with some ``CADRE_*`` settings changed."""

    def start(**env: str) -> AbstractContextManager[Attacked]:
        return serve(tmp_path_factory.mktemp("attacked"), **env)

    return start


def assert_refused(reply: httpx.Response, status: int, error: str | None = None) -> dict:
    """A 4xx problem+json with ``error``, ``message`` and ``request_id``, never a 500."""
    assert reply.status_code == status, reply.text[:2000]
    assert reply.headers["content-type"].startswith("application/problem+json")
    body = reply.json()
    assert body["request_id"] == reply.headers["x-request-id"]
    assert body["message"]
    if error is not None:
        assert body["error"] == error, body
    return body
