"""Hardening 5: common passwords at registration, short signing keys at start-up."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from scripts.live_server import free_port
from tests.attacks.conftest import BASE_ENV, assert_refused


@pytest.mark.parametrize("password", ["password1", "qwerty123", "Iloveyou1", "abc123456"])
def test_registering_with_a_common_password_is_422_and_creates_no_account(server, password):
    reply = httpx.post(
        f"{server.url}/api/v1/auth/register",
        json={"email": "victim@example.com", "username": "victim", "password": password},
    )
    problem = assert_refused(reply, 422, "weak_password")
    assert problem["details"] == {"password": "is one of the most commonly used passwords"}
    login = httpx.post(
        f"{server.url}/api/v1/auth/login", json={"username": "victim", "password": password}
    )
    assert login.status_code == 401


def test_an_uncommon_password_is_accepted(server):
    reply = httpx.post(
        f"{server.url}/api/v1/auth/register",
        json={"email": "ok@example.com", "username": "okay", "password": "tangerine-walrus-7"},
    )
    assert reply.status_code == 201, reply.text


def serve(tmp_path, **env: str) -> subprocess.CompletedProcess[str]:
    """``cadre serve`` that is expected to refuse to start (it would otherwise keep running)."""
    environment = {**os.environ, **BASE_ENV, "CADRE_DATA_DIR": str(tmp_path / "data"), **env}
    return subprocess.run(
        [sys.executable, "-m", "cadre.cli", "serve", "--port", str(free_port())],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_refuses_a_secret_key_shorter_than_32_bytes(tmp_path):
    started = serve(tmp_path, CADRE_SECRET_KEY="s" * 31)
    assert started.returncode == 2
    assert "CADRE_SECRET_KEY must be at least 32 bytes long (it has 31)" in started.stderr
    assert "Traceback" not in started.stderr


def test_serve_refuses_a_short_key_file_in_the_data_dir(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "secret_key").write_text("too-short")
    started = serve(tmp_path, CADRE_SECRET_KEY="")
    assert started.returncode == 2
    assert "shorter than 32 bytes" in started.stderr
    assert "Traceback" not in started.stderr
