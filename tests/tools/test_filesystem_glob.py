"""filesystem_glob: names matched segment by segment, confined, bounded."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from cadre.engine.tools import search
from cadre.engine.tools.base import FileNotFound, PathOutsideWorkspace, ToolContext
from cadre.engine.tools.grep_worker import match_parts
from cadre.engine.tools.registry import execute_tool


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    for path in ["a.py", "b.txt", "src/c.py", "src/deep/d.py", "src/deep/e.md", ".hidden.py"]:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("x")
    return root


async def glob(workspace: Path, mode: str = "safe", **args: Any) -> dict:
    context = ToolContext(workspace=workspace, mode=mode)  # type: ignore[arg-type]
    return await execute_tool("filesystem_glob", args, context)


@pytest.mark.parametrize(
    ("pattern", "matches"),
    [
        ("*.py", [".hidden.py", "a.py"]),
        ("**/*.py", [".hidden.py", "a.py", "src/c.py", "src/deep/d.py"]),
        ("src/**/*.py", ["src/c.py", "src/deep/d.py"]),
        ("src/*", ["src/c.py", "src/deep"]),
        ("**/deep", ["src/deep"]),
        ("./src/deep/?.md", ["src/deep/e.md"]),
        ("*.[pt]*", [".hidden.py", "a.py", "b.txt"]),
        ("nothing*", []),
    ],
)
async def test_patterns(workspace: Path, pattern: str, matches: list[str]) -> None:
    assert await glob(workspace, pattern=pattern) == {"matches": matches, "truncated": False}


async def test_under_a_path_the_matches_stay_workspace_relative(workspace: Path) -> None:
    result = await glob(workspace, pattern="*.py", path="src/deep")
    assert result == {"matches": ["src/deep/d.py"], "truncated": False}


@pytest.mark.parametrize("pattern", ["../*", "/etc/*", "src/../../*", "~/x", "**/../*"])
async def test_patterns_that_climb_out_are_403(workspace: Path, pattern: str) -> None:
    with pytest.raises(PathOutsideWorkspace):
        await glob(workspace, pattern=pattern)


@pytest.mark.parametrize("path", ["..", "/etc", "src/../.."])
async def test_paths_outside_are_403(workspace: Path, path: str) -> None:
    with pytest.raises(PathOutsideWorkspace):
        await glob(workspace, pattern="*", path=path)


async def test_symlinked_directories_are_not_followed(workspace: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("x")
    os.symlink(outside, workspace / "link")
    result = await glob(workspace, pattern="**/*.py")
    assert not any("secret" in match for match in result["matches"])
    assert (await glob(workspace, pattern="link"))["matches"] == ["link"]  # named, not entered
    with pytest.raises(PathOutsideWorkspace):
        await glob(workspace, pattern="*", path="link")


async def test_a_missing_directory_is_404(workspace: Path) -> None:
    with pytest.raises(FileNotFound):
        await glob(workspace, pattern="*", path="nope")


async def test_matches_and_the_walk_are_bounded(workspace: Path, monkeypatch) -> None:
    for n in range(30):
        (workspace / f"many{n:02}.log").write_text("")
    monkeypatch.setattr(search, "GLOB_MAX_MATCHES", 10)
    result = await glob(workspace, pattern="*.log")
    assert result["truncated"] is True and len(result["matches"]) == 10
    monkeypatch.setattr(search, "GLOB_MAX_MATCHES", 1000)
    monkeypatch.setattr(search, "GLOB_MAX_ENTRIES", 5)
    assert (await glob(workspace, pattern="**/*"))["truncated"] is True


def test_match_parts_handles_double_star_without_blowing_up() -> None:
    assert match_parts(["a", "b", "c.py"], ["**", "*.py"])
    assert match_parts(["c.py"], ["**", "**", "*.py"])
    assert not match_parts(["a", "b"], ["a"])
    parts = ["a"] * 200
    assert not match_parts(parts, ["**"] * 50 + ["b"])  # linear, not exponential


async def test_names_that_are_not_utf8_are_shown_with_replacement_characters(
    workspace: Path,
) -> None:
    (workspace / os.fsdecode(b"caf\xe9.py")).write_text("x")
    result = await glob(workspace, pattern="caf*.py")
    assert result == {"matches": ["caf\ufffd.py"], "truncated": False}
