"""Hardening 4: filesystem_write to a path a thousand directories deep."""

from __future__ import annotations

import httpx
import pytest

from tests.attacks.conftest import Attacked, assert_refused

WRITE = "/api/v1/tools/filesystem_write/execute"


def write(server: Attacked, path: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}{WRITE}",
        json={"args": {"path": path, "content": "x"}},
        headers=server.headers(),
        timeout=30,
    )


@pytest.mark.parametrize(
    ("levels", "detail"),
    [(33, "deeper than 32 levels"), (1000, "longer than 1024 characters")],
)
def test_write_deeper_than_the_limit_is_422_and_creates_nothing(server, levels, detail):
    reply = write(server, "d/" * (levels - 1) + "f")
    problem = assert_refused(reply, 422, "path_too_long")
    assert problem["details"] == {"path": detail}
    assert len(reply.content) < 2000  # a problem, not a traceback
    workspaces = server.data_dir / "workspaces"
    assert not any(workspaces.glob("*/d"))


def test_write_longer_than_the_limit_is_422(server):
    reply = write(server, "n" * 1025)
    problem = assert_refused(reply, 422, "path_too_long")
    assert problem["details"] == {"path": "longer than 1024 characters"}


def test_write_at_the_depth_limit_succeeds(server):
    reply = write(server, "d/" * 31 + "f")
    assert reply.status_code == 200, reply.text
    assert reply.json()["result"]["path"] == "d/" * 31 + "f"


def test_limits_follow_the_settings(start_server):
    with start_server(CADRE_MAX_PATH_DEPTH="3", CADRE_MAX_PATH_LENGTH="20") as server:
        assert_refused(write(server, "d/" * 999 + "f"), 422, "path_too_long")
        assert write(server, "a/b/c").status_code == 200
        assert_refused(write(server, "a/b/c/d"), 422, "path_too_long")
        assert_refused(write(server, "a" * 21), 422, "path_too_long")
