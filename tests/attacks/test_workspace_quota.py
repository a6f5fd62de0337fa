"""Filling a workspace past CADRE_WORKSPACE_QUOTA_MB through filesystem_write, on a live server."""

from __future__ import annotations

import httpx

from tests.attacks.conftest import Attacked, assert_refused

WRITE = "/api/v1/tools/filesystem_write/execute"
MIB = 1024 * 1024
CHUNK = 256 * 1024


def write(server: Attacked, headers: dict[str, str], path: str, size: int) -> httpx.Response:
    return httpx.post(
        f"{server.url}{WRITE}",
        json={"args": {"path": path, "content": "x" * size}},
        headers=headers,
        timeout=30,
    )


def test_a_workspace_holds_its_quota_and_not_a_byte_more(start_server):
    with start_server(CADRE_WORKSPACE_QUOTA_MB="1", CADRE_MAX_BODY_BYTES=str(2 * MIB)) as server:
        mallory, bystander = server.headers("mallory"), server.headers("bystander")
        for n in range(4):  # exactly 1 MiB
            assert write(server, mallory, f"chunk{n}", CHUNK).status_code == 200
        problem = assert_refused(write(server, mallory, "one-more", 1), 413)
        assert problem["error"] == "workspace_quota_exceeded"
        assert "1 MiB" in problem["message"] and str(MIB) in problem["message"]
        assert not list((server.data_dir / "workspaces").glob("*/one-more"))

        # Replacing a file counts only the difference: the same size fits, one byte more does not.
        assert write(server, mallory, "chunk0", CHUNK).status_code == 200
        assert_refused(write(server, mallory, "chunk0", CHUNK + 1), 413, "workspace_quota_exceeded")
        assert write(server, mallory, "chunk0", 1000).status_code == 200
        assert write(server, mallory, "small", CHUNK - 1000).status_code == 200
        assert_refused(write(server, mallory, "small2", 1), 413, "workspace_quota_exceeded")

        # Another user's workspace has its own quota, untouched by mallory's.
        for n in range(4):
            assert write(server, bystander, f"chunk{n}", CHUNK).status_code == 200
        assert_refused(write(server, bystander, "more", 1), 413, "workspace_quota_exceeded")
