"""Hardening 8: one echo run cannot fill the database; the data directory is private."""

from __future__ import annotations

import stat
from collections.abc import Iterator

import httpx
import pytest

from tests.attacks.conftest import Attacked, serve

MAX_OUTPUT_TOKENS = 50


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attacked]:
    """A small output limit, and no CADRE_SECRET_KEY: the server generates its own."""
    root = tmp_path_factory.mktemp("attacked")
    with serve(root, CADRE_MAX_OUTPUT_TOKENS=str(MAX_OUTPUT_TOKENS), CADRE_SECRET_KEY="") as s:
        yield s


def test_echo_asked_for_ten_million_tokens_stops_at_max_output_tokens(server):
    headers = server.headers()
    agent = httpx.post(f"{server.url}/api/v1/agents", json={"name": "talker"}, headers=headers)
    started = httpx.post(
        f"{server.url}/api/v1/agents/{agent.json()['id']}/execute",
        json={"task": "blah", "inputs": {"echo": {"tokens": 10_000_000}}},
        headers=headers,
    )
    execution = started.json()["execution_id"]
    body = {"status": "queued"}
    while body["status"] in {"queued", "running"}:
        body = httpx.get(f"{server.url}/api/v1/executions/{execution}", headers=headers).json()
    assert body["status"] == "completed"
    assert body["stop_reason"] == "completed"  # as a real model's length stop ends
    assert body["usage"]["completion_tokens"] == MAX_OUTPUT_TOKENS
    events = httpx.get(
        f"{server.url}/api/v1/executions/{execution}/events?limit=1000", headers=headers
    ).json()
    tokens = [e for e in events["events"] if e["type"] == "token"]
    assert len(tokens) == MAX_OUTPUT_TOKENS
    assert events["total"] < MAX_OUTPUT_TOKENS + 20


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_dir_is_0700_and_database_and_key_files_0600(server):
    server.token("someone")  # something written
    assert mode(server.data_dir) == 0o700
    assert mode(server.data_dir / "cadre.db") == 0o600
    for companion in ("cadre.db-wal", "cadre.db-shm"):
        if (server.data_dir / companion).exists():
            assert mode(server.data_dir / companion) == 0o600
    key = server.data_dir / "secret_key"
    assert mode(key) == 0o600
    assert len(key.read_bytes()) >= 32
