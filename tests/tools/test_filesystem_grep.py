"""filesystem_grep: a regular expression over workspace files, in a limited child process."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from cadre.engine.tools import search
from cadre.engine.tools.base import FileNotFound, PathOutsideWorkspace, ToolContext, ToolFailed
from cadre.engine.tools.registry import execute_tool
from cadre.errors import ValidationFailed


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    files = {
        "a.py": "import os\ndef main():\n    return os.getcwd()\n",
        "src/b.py": "# TODO: tidy\nx = 1\n",
        "src/notes.md": "todo list\n",
        "bin.dat": "TODO\x00binary",
    }
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


async def grep(workspace: Path, **args: Any) -> dict:
    context = ToolContext(workspace=workspace, mode="safe")
    return await execute_tool("filesystem_grep", args, context)


async def test_finds_lines_with_paths_and_numbers(workspace: Path) -> None:
    assert await grep(workspace, pattern=r"os\.") == {
        "matches": [{"path": "a.py", "line_number": 3, "line": "    return os.getcwd()"}],
        "truncated": False,
    }


async def test_case_glob_and_path_narrow_the_search(workspace: Path) -> None:
    sensitive = await grep(workspace, pattern="TODO")
    assert [m["path"] for m in sensitive["matches"]] == ["src/b.py"]  # binary file skipped
    loose = await grep(workspace, pattern="todo", case_insensitive=True)
    assert [m["path"] for m in loose["matches"]] == ["src/b.py", "src/notes.md"]
    only_md = await grep(workspace, pattern="todo", case_insensitive=True, glob="*.md")
    assert [m["path"] for m in only_md["matches"]] == ["src/notes.md"]
    nested = await grep(workspace, pattern="todo", case_insensitive=True, glob="src/*.py")
    assert [m["path"] for m in nested["matches"]] == ["src/b.py"]
    one_file = await grep(workspace, pattern=".", path="src/notes.md")
    assert one_file["matches"] == [{"path": "src/notes.md", "line_number": 1, "line": "todo list"}]


async def test_max_matches_truncates(workspace: Path) -> None:
    (workspace / "many.txt").write_text("hit\n" * 50)
    result = await grep(workspace, pattern="hit", max_matches=5)
    assert result["truncated"] is True and len(result["matches"]) == 5


async def test_large_files_are_skipped_and_long_lines_cut(workspace: Path, monkeypatch) -> None:
    (workspace / "large.txt").write_text("needle\n" + "x" * 5000)
    (workspace / "long.txt").write_text("needle" + "y" * 5000)
    monkeypatch.setattr(search, "GREP_MAX_FILE_BYTES", 4000)
    result = await grep(workspace, pattern="needle")
    assert [m["path"] for m in result["matches"]] == []
    monkeypatch.setattr(search, "GREP_MAX_FILE_BYTES", 1024 * 1024)
    result = await grep(workspace, pattern="needley")
    lines = {m["path"]: m["line"] for m in result["matches"]}
    assert len(lines["long.txt"]) == search.GREP_MAX_LINE_CHARS


async def test_total_bytes_read_are_capped(workspace: Path, monkeypatch) -> None:
    monkeypatch.setattr(search, "GREP_MAX_TOTAL_BYTES", 40)
    assert (await grep(workspace, pattern="zzz"))["truncated"] is True


async def test_an_invalid_pattern_is_a_tool_error(workspace: Path) -> None:
    with pytest.raises(ToolFailed, match="not a valid regular expression"):
        await grep(workspace, pattern="(unclosed")


async def test_a_long_pattern_is_invalid(workspace: Path) -> None:
    with pytest.raises(ValidationFailed) as raised:
        await grep(workspace, pattern="a" * (search.MAX_PATTERN_CHARS + 1))
    assert "args.pattern" in raised.value.details


async def test_catastrophic_backtracking_fails_quickly_and_clearly(
    workspace: Path, monkeypatch
) -> None:
    (workspace / "evil.txt").write_text("a" * 40 + "!\n")
    monkeypatch.setattr(search, "GREP_CPU_SECONDS", 1)
    monkeypatch.setattr(search, "GREP_WALL_SECONDS", 5)
    started = time.monotonic()
    with pytest.raises(ToolFailed, match="backtrack catastrophically"):
        await grep(workspace, pattern="(a+)+$", glob="evil.txt")
    assert time.monotonic() - started < 8


@pytest.mark.parametrize("path", ["..", "/etc", "src/../..", "/etc/passwd"])
async def test_paths_outside_are_403(workspace: Path, path: str) -> None:
    with pytest.raises(PathOutsideWorkspace):
        await grep(workspace, pattern="root", path=path)


async def test_symlinks_are_not_followed(workspace: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("password=hunter2\n")
    os.symlink(outside, workspace / "dirlink")
    os.symlink(outside / "secret.txt", workspace / "filelink.txt")
    assert (await grep(workspace, pattern="hunter2"))["matches"] == []
    for path in ["dirlink", "filelink.txt"]:
        with pytest.raises(PathOutsideWorkspace):
            await grep(workspace, pattern="hunter2", path=path)


async def test_a_missing_path_is_404(workspace: Path) -> None:
    with pytest.raises(FileNotFound):
        await grep(workspace, pattern="x", path="nope")


async def test_names_that_are_not_utf8_are_shown_with_replacement_characters(
    workspace: Path,
) -> None:
    (workspace / os.fsdecode(b"caf\xe9.txt")).write_text("needle\n")
    result = await grep(workspace, pattern="needle")
    assert result["matches"] == [{"path": "caf\ufffd.txt", "line_number": 1, "line": "needle"}]
