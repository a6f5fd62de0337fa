"""The workspace: one confinement check, per-user directories, sandbox copies."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from cadre.engine.tools.base import PathLimits, PathOutsideWorkspace, PathTooLong
from cadre.engine.tools.workspace import resolve_inside, sandbox_copy, user_workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "a.txt").write_text("a")
    return root


@pytest.mark.parametrize(
    "path",
    ["../x", "/etc/passwd", "a/../../x", "docs/../../x", "..", "~/x", "ok\x00.txt"],
)
def test_resolve_refuses_paths_leaving_the_workspace(workspace: Path, path: str) -> None:
    with pytest.raises(PathOutsideWorkspace) as raised:
        resolve_inside(workspace, path)
    assert raised.value.error == "path_outside_workspace"
    assert raised.value.status == 403


def test_resolve_keeps_dotdot_that_stays_inside(workspace: Path) -> None:
    resolved = resolve_inside(workspace, "docs/../docs/./a.txt")
    assert resolved == workspace.resolve() / "docs" / "a.txt"


def test_resolve_returns_paths_under_the_real_workspace(tmp_path: Path, workspace: Path) -> None:
    (tmp_path / "alias").symlink_to(workspace, target_is_directory=True)
    assert resolve_inside(tmp_path / "alias", "docs/a.txt") == workspace / "docs" / "a.txt"


def test_resolve_refuses_symlink_to_etc(workspace: Path) -> None:
    (workspace / "etc").symlink_to("/etc", target_is_directory=True)
    for path in ("etc", "etc/passwd", "etc/nonexistent"):
        with pytest.raises(PathOutsideWorkspace):
            resolve_inside(workspace, path)


def test_resolve_refuses_escaping_symlink_in_the_middle(workspace: Path, tmp_path: Path) -> None:
    (tmp_path / "outside" / "deep").mkdir(parents=True)
    (workspace / "docs" / "door").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(PathOutsideWorkspace):
        resolve_inside(workspace, "docs/door/deep/file.txt")


def test_resolve_refuses_relative_symlink_climbing_out(workspace: Path) -> None:
    (workspace / "up").symlink_to("../..", target_is_directory=True)
    with pytest.raises(PathOutsideWorkspace):
        resolve_inside(workspace, "up/tmp")


def test_resolve_refuses_chain_of_links_ending_outside(workspace: Path, tmp_path: Path) -> None:
    (workspace / "second").symlink_to(tmp_path)
    (workspace / "first").symlink_to("second")
    with pytest.raises(PathOutsideWorkspace):
        resolve_inside(workspace, "first")


def test_resolve_refuses_dangling_link_pointing_outside(workspace: Path) -> None:
    (workspace / "dangling").symlink_to("/nonexistent/target")
    with pytest.raises(PathOutsideWorkspace):
        resolve_inside(workspace, "dangling")


def test_resolve_allows_symlinks_pointing_inside(workspace: Path) -> None:
    (workspace / "alias.txt").symlink_to(workspace / "docs" / "a.txt")
    (workspace / "shortcut").symlink_to("docs", target_is_directory=True)
    assert resolve_inside(workspace, "alias.txt") == workspace / "alias.txt"
    assert resolve_inside(workspace, "shortcut/a.txt") == workspace / "shortcut" / "a.txt"


def test_user_workspace_creates_the_directory_under_data_dir(tmp_path: Path) -> None:
    path = user_workspace(tmp_path, "usr_01ABC-x")
    assert path == tmp_path / "workspaces" / "usr_01ABC-x"
    assert path.is_dir()
    assert user_workspace(tmp_path, "usr_01ABC-x") == path


@pytest.mark.parametrize(
    "user_id", ["", ".", "..", "../x", "a/b", "a\\b", "abc\n", "a b", "é", "x" * 129]
)
def test_user_workspace_refuses_ids_that_are_not_simple(tmp_path: Path, user_id: str) -> None:
    with pytest.raises(ValueError):
        user_workspace(tmp_path, user_id)
    assert not (tmp_path / "workspaces").exists()


async def test_sandbox_copy_isolates_writes_from_the_original(workspace: Path) -> None:
    async with sandbox_copy(workspace) as copy:
        assert copy != workspace
        assert (copy / "docs" / "a.txt").read_text() == "a"
        (copy / "docs" / "a.txt").write_text("changed")
        (copy / "new.txt").write_text("new")
    assert (workspace / "docs" / "a.txt").read_text() == "a"
    assert not (workspace / "new.txt").exists()


async def test_sandbox_copy_keeps_symlinks_as_links(workspace: Path, tmp_path: Path) -> None:
    (workspace / "etc").symlink_to("/etc", target_is_directory=True)
    (workspace / "original").symlink_to(workspace / "docs" / "a.txt")
    async with sandbox_copy(workspace) as copy:
        assert os.readlink(copy / "etc") == "/etc"
        # An absolute link into the original workspace now leads outside the copy.
        with pytest.raises(PathOutsideWorkspace):
            resolve_inside(copy, "original")


async def test_sandbox_copy_is_removed_afterwards(workspace: Path) -> None:
    async with sandbox_copy(workspace) as copy:
        pass
    assert not copy.exists()
    assert not copy.parent.exists()


async def test_sandbox_copy_is_removed_when_the_body_raises(workspace: Path) -> None:
    with pytest.raises(RuntimeError):
        async with sandbox_copy(workspace) as copy:
            raise RuntimeError("boom")
    assert not copy.parent.exists()


async def test_sandbox_copy_is_removed_when_cancelled(workspace: Path) -> None:
    seen: list[Path] = []
    with anyio.CancelScope() as scope:
        async with sandbox_copy(workspace) as copy:
            seen.append(copy)
            scope.cancel()
            await anyio.sleep(10)
    assert scope.cancelled_caught
    assert not seen[0].parent.exists()


def test_resolve_refuses_paths_deeper_or_longer_than_the_limits(workspace):
    limits = PathLimits(max_depth=2, max_length=11)
    assert resolve_inside(workspace, "a/b", limits) == workspace / "a" / "b"
    assert resolve_inside(workspace, "a/b/c/../..", limits) == workspace / "a"  # normalised first
    with pytest.raises(PathTooLong, match="2 levels"):
        resolve_inside(workspace, "a/b/c", limits)
    with pytest.raises(PathTooLong, match="11 characters"):
        resolve_inside(workspace, "abcdefghijkl", limits)
