"""filesystem_edit: one exact replacement (or all), confined and held to the quota."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from cadre.engine.tools.base import (
    FileNotFound,
    PathOutsideWorkspace,
    ToolContext,
    ToolFailed,
    ToolRefused,
    WorkspaceQuotaExceeded,
)
from cadre.engine.tools.filesystem import MAX_FILE_BYTES
from cadre.engine.tools.registry import execute_tool
from cadre.errors import ValidationFailed


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "app.py").write_text("def f():\n    return 1\n\n\ndef g():\n    return 1\n")
    return root


async def edit(workspace: Path, mode: str = "full", quota: int | None = None, **args: Any) -> dict:
    context = ToolContext(workspace=workspace, mode=mode, quota_bytes=quota)  # type: ignore[arg-type]
    return await execute_tool("filesystem_edit", args, context)


async def test_replaces_a_unique_occurrence(workspace: Path) -> None:
    result = await edit(workspace, path="app.py", old_string="def g", new_string="def h")
    assert result == {"path": "app.py", "replacements": 1}
    assert "def h():" in (workspace / "app.py").read_text()


async def test_a_repeated_string_is_refused_unless_replace_all(workspace: Path) -> None:
    with pytest.raises(ToolFailed, match="occurs 2 times"):
        await edit(workspace, path="app.py", old_string="return 1", new_string="return 2")
    assert (workspace / "app.py").read_text().count("return 1") == 2  # untouched
    result = await edit(
        workspace, path="app.py", old_string="return 1", new_string="return 2", replace_all=True
    )
    assert result == {"path": "app.py", "replacements": 2}
    assert (workspace / "app.py").read_text().count("return 2") == 2


async def test_a_missing_string_is_refused(workspace: Path) -> None:
    with pytest.raises(ToolFailed, match="does not occur"):
        await edit(workspace, path="app.py", old_string="class", new_string="klass")


async def test_identical_strings_are_refused(workspace: Path) -> None:
    with pytest.raises(ToolFailed, match="the same"):
        await edit(workspace, path="app.py", old_string="def", new_string="def")


async def test_an_empty_old_string_is_invalid(workspace: Path) -> None:
    with pytest.raises(ValidationFailed) as raised:
        await edit(workspace, path="app.py", old_string="", new_string="x")
    assert "args.old_string" in raised.value.details


async def test_a_missing_file_is_404(workspace: Path) -> None:
    with pytest.raises(FileNotFound):
        await edit(workspace, path="nope.py", old_string="a", new_string="b")


async def test_binary_files_are_refused(workspace: Path) -> None:
    (workspace / "blob").write_bytes(b"\xff\xfe abc")
    with pytest.raises(ToolFailed, match="not UTF-8"):
        await edit(workspace, path="blob", old_string="abc", new_string="def")


async def test_the_file_mode_is_kept(workspace: Path) -> None:
    script = workspace / "run.sh"
    script.write_text("echo one\n")
    script.chmod(0o755)
    await edit(workspace, path="run.sh", old_string="one", new_string="two")
    assert script.stat().st_mode & 0o777 == 0o755
    assert script.read_text() == "echo two\n"


async def test_a_result_over_one_mib_is_refused(workspace: Path) -> None:
    (workspace / "big.txt").write_text("x" * (MAX_FILE_BYTES - 10) + "MARK")
    with pytest.raises(ToolFailed, match="1 MiB"):
        await edit(workspace, path="big.txt", old_string="MARK", new_string="y" * 100)


async def test_safe_mode_refuses_it(workspace: Path) -> None:
    with pytest.raises(ToolRefused):
        await edit(workspace, mode="safe", path="app.py", old_string="def g", new_string="def h")
    assert "def g" in (workspace / "app.py").read_text()


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/hostname", "sub/../../outside.txt"])
async def test_paths_outside_are_403(workspace: Path, path: str) -> None:
    (workspace.parent / "outside.txt").write_text("secret")
    with pytest.raises(PathOutsideWorkspace):
        await edit(workspace, path=path, old_string="secret", new_string="owned")
    assert (workspace.parent / "outside.txt").read_text() == "secret"


async def test_a_symlink_out_is_not_followed(workspace: Path) -> None:
    target = workspace.parent / "outside.txt"
    target.write_text("secret")
    os.symlink(target, workspace / "link.txt")
    with pytest.raises(PathOutsideWorkspace):
        await edit(workspace, path="link.txt", old_string="secret", new_string="owned")
    assert target.read_text() == "secret"


async def test_growth_past_the_quota_is_refused(workspace: Path) -> None:
    size = (workspace / "app.py").stat().st_size
    with pytest.raises(WorkspaceQuotaExceeded):
        await edit(workspace, quota=size + 3, path="app.py", old_string="def g", new_string="x" * 9)
    shrunk = await edit(workspace, quota=size, path="app.py", old_string="def g", new_string="h")
    assert shrunk["replacements"] == 1
