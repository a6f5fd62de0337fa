"""CADRE_WORKSPACE_QUOTA_MB: filesystem_write and sandbox copies held to the workspace quota."""

from __future__ import annotations

import asyncio
import glob
import tempfile
from pathlib import Path

import pytest

from cadre.engine.tools import workspace as workspace_module
from cadre.engine.tools.base import ToolContext, WorkspaceQuotaExceeded
from cadre.engine.tools.registry import execute_tool
from cadre.engine.tools.workspace import sandbox_copy, workspace_size
from cadre.settings import Settings

QUOTA = 1000


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "a.txt").write_bytes(b"a" * 100)
    return root


async def write(workspace: Path, path: str, size: int, quota: int | None = QUOTA) -> dict:
    context = ToolContext(workspace=workspace, quota_bytes=quota)
    return await execute_tool("filesystem_write", {"path": path, "content": "x" * size}, context)


def test_size_counts_regular_files_and_never_follows_links(workspace: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"b" * 5000)
    (workspace / "link").symlink_to(big)
    (workspace / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    (workspace / "docs" / "deeper").mkdir()
    (workspace / "docs" / "deeper" / "b.txt").write_bytes(b"b" * 23)
    assert workspace_size(workspace) == 123


def test_size_stops_once_over_the_bound(workspace: Path) -> None:
    for n in range(10):
        (workspace / f"f{n}").write_bytes(b"f" * 100)
    assert 50 < workspace_size(workspace, stop_above=50) < 1100


def test_size_refuses_past_the_entry_limit(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workspace_module, "MAX_WALK_ENTRIES", 3)
    for n in range(4):
        (workspace / f"f{n}").touch()
    with pytest.raises(WorkspaceQuotaExceeded, match="more than 3 entries"):
        workspace_size(workspace)


async def test_writes_up_to_the_quota_succeed_and_the_next_is_refused(workspace: Path) -> None:
    assert (await write(workspace, "b.txt", 850))["size"] == 850
    assert (await write(workspace, "c.txt", 50))["size"] == 50  # exactly the quota
    with pytest.raises(WorkspaceQuotaExceeded) as refused:
        await write(workspace, "d.txt", 1)
    assert refused.value.status == 413
    assert refused.value.error == "workspace_quota_exceeded"
    assert "1000 bytes" in refused.value.message
    assert not (workspace / "d.txt").exists()
    assert not glob.glob(str(workspace / ".cadre-write-*"))


async def test_replacing_a_file_counts_only_the_difference(workspace: Path) -> None:
    await write(workspace, "b.txt", 900)  # 1000 in all
    assert (await write(workspace, "b.txt", 900))["size"] == 900  # same size: still fits
    assert (await write(workspace, "b.txt", 100))["size"] == 100  # shrinking frees room
    assert (await write(workspace, "c.txt", 800))["size"] == 800
    with pytest.raises(WorkspaceQuotaExceeded):
        await write(workspace, "b.txt", 101)
    assert (workspace / "b.txt").stat().st_size == 100


async def test_a_link_replaced_counts_nothing_for_the_old_target(
    workspace: Path, tmp_path: Path
) -> None:
    big = tmp_path / "elsewhere.bin"
    big.write_bytes(b"b" * 5000)
    (workspace / "link").symlink_to(workspace / "docs" / "a.txt")
    with pytest.raises(WorkspaceQuotaExceeded):
        await write(workspace, "link", 901)  # the link's target is not "freed"
    assert (await write(workspace, "link", 800))["size"] == 800
    assert (workspace / "docs" / "a.txt").read_bytes() == b"a" * 100  # replaced the link only


async def test_no_quota_means_no_limit(workspace: Path) -> None:
    assert (await write(workspace, "b.txt", 5000, quota=None))["size"] == 5000


async def test_sandbox_copy_refuses_a_workspace_over_its_quota(workspace: Path) -> None:
    before = set(glob.glob(str(Path(tempfile.gettempdir()) / "cadre-sandbox-*")))
    with pytest.raises(WorkspaceQuotaExceeded, match="no sandbox copy"):
        async with sandbox_copy(workspace, quota_bytes=99):
            pytest.fail("copied")
    assert set(glob.glob(str(Path(tempfile.gettempdir()) / "cadre-sandbox-*"))) == before
    async with sandbox_copy(workspace, quota_bytes=100) as copy:
        assert (copy / "docs" / "a.txt").exists()


async def test_writes_in_a_sandbox_copy_are_held_to_the_quota(workspace: Path) -> None:
    async with sandbox_copy(workspace, quota_bytes=QUOTA) as copy:
        context = ToolContext(workspace=copy, mode="sandbox", quota_bytes=QUOTA)
        args = {"path": "b.txt", "content": "x" * 901}
        with pytest.raises(WorkspaceQuotaExceeded):
            await execute_tool("filesystem_write", args, context)


def test_the_setting_is_in_megabytes_and_zero_means_none() -> None:
    assert Settings(workspace_quota_mb=1).workspace_quota_bytes == 1024 * 1024
    assert Settings(workspace_quota_mb=0).workspace_quota_bytes is None
    assert Settings().workspace_quota_bytes == 100 * 1024 * 1024


async def test_concurrent_writes_cannot_both_slip_under_the_quota(workspace: Path) -> None:
    results = await asyncio.gather(
        *(write(workspace, f"w{n}.txt", 300) for n in range(6)), return_exceptions=True
    )
    written = [r for r in results if isinstance(r, dict)]
    assert len(written) == 3  # 100 + 3 * 300 = 1000
    assert all(isinstance(r, WorkspaceQuotaExceeded) for r in results if r not in written)
    assert workspace_size(workspace) == 1000
