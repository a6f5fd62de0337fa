"""filesystem_read, filesystem_write and filesystem_list, run the way the executor runs them."""

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
)
from cadre.engine.tools.filesystem import MAX_ENTRIES, MAX_FILE_BYTES
from cadre.engine.tools.registry import execute_tool


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "notes.txt").write_text("hello")
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "secret.txt").write_text("private")
    return secret


async def run(name: str, args: dict[str, Any], workspace: Path, mode: str = "full") -> dict:
    return await execute_tool(name, args, ToolContext(workspace=workspace, mode=mode))  # type: ignore[arg-type]


async def test_read_seed_example(workspace: Path) -> None:
    (workspace / "test.txt").write_bytes(b"File contents..." + b" " * (1024 - 16))
    result = await run("filesystem_read", {"path": "test.txt", "encoding": "utf-8"}, workspace)
    assert result == {"content": "File contents..." + " " * (1024 - 16), "size": 1024}


async def test_read_reports_size_in_bytes_not_characters(workspace: Path) -> None:
    (workspace / "accents.txt").write_text("héllo", encoding="utf-8")
    result = await run("filesystem_read", {"path": "accents.txt"}, workspace)
    assert result == {"content": "héllo", "size": 6}


async def test_read_decodes_with_the_requested_encoding(workspace: Path) -> None:
    (workspace / "latin.txt").write_bytes("café".encode("latin-1"))
    (workspace / "wide.txt").write_bytes("hi".encode("utf-16"))
    latin = await run("filesystem_read", {"path": "latin.txt", "encoding": "latin-1"}, workspace)
    wide = await run("filesystem_read", {"path": "wide.txt", "encoding": "utf-16"}, workspace)
    assert latin["content"] == "café"
    assert wide == {"content": "hi", "size": 6}  # with its byte-order mark


async def test_read_refuses_undecodable_content(workspace: Path) -> None:
    (workspace / "binary").write_bytes(b"\xff\xfe\x00\x80")
    with pytest.raises(ToolFailed, match="not utf-8 text") as raised:
        await run("filesystem_read", {"path": "binary"}, workspace)
    assert raised.value.error == "tool_error"
    (workspace / "naive.txt").write_text("naïve")
    with pytest.raises(ToolFailed, match="not ascii text"):
        await run("filesystem_read", {"path": "naive.txt", "encoding": "ascii"}, workspace)


async def test_read_refuses_a_directory(workspace: Path) -> None:
    (workspace / "sub").mkdir()
    with pytest.raises(ToolFailed, match="is a directory"):
        await run("filesystem_read", {"path": "sub"}, workspace)


async def test_read_refuses_files_over_one_mebibyte(workspace: Path) -> None:
    (workspace / "big.txt").write_bytes(b"x" * (MAX_FILE_BYTES + 1))
    (workspace / "limit.txt").write_bytes(b"x" * MAX_FILE_BYTES)
    with pytest.raises(ToolFailed, match="larger than 1048576 bytes"):
        await run("filesystem_read", {"path": "big.txt"}, workspace)
    at_limit = await run("filesystem_read", {"path": "limit.txt"}, workspace)
    assert at_limit["size"] == MAX_FILE_BYTES


async def test_read_refuses_a_fifo_instead_of_blocking(workspace: Path) -> None:
    os.mkfifo(workspace / "pipe")
    with pytest.raises(ToolFailed, match="not a regular file"):
        await run("filesystem_read", {"path": "pipe"}, workspace)


async def test_read_missing_file_is_file_not_found(workspace: Path) -> None:
    with pytest.raises(FileNotFound) as raised:
        await run("filesystem_read", {"path": "nope.txt"}, workspace)
    assert (raised.value.status, raised.value.error) == (404, "file_not_found")


@pytest.mark.parametrize("path", ["../outside/secret.txt", "/etc/passwd", "a/../../x", "x\x00"])
async def test_read_refuses_paths_outside_the_workspace(workspace: Path, path: str) -> None:
    with pytest.raises(PathOutsideWorkspace):
        await run("filesystem_read", {"path": path}, workspace)


async def test_read_refuses_symlink_escaping_workspace(workspace: Path, outside: Path) -> None:
    (workspace / "link.txt").symlink_to(outside / "secret.txt")
    (workspace / "etc").symlink_to("/etc", target_is_directory=True)
    with pytest.raises(PathOutsideWorkspace):
        await run("filesystem_read", {"path": "link.txt"}, workspace)
    with pytest.raises(PathOutsideWorkspace):
        await run("filesystem_read", {"path": "etc/passwd"}, workspace)


async def test_read_follows_symlink_inside_workspace(workspace: Path) -> None:
    (workspace / "alias.txt").symlink_to("notes.txt")
    assert await run("filesystem_read", {"path": "alias.txt"}, workspace) == {
        "content": "hello",
        "size": 5,
    }


async def test_write_creates_parents_and_reports_normalised_path(workspace: Path) -> None:
    result = await run(
        "filesystem_write", {"path": "./d/e/../f.txt", "content": "héllo"}, workspace
    )
    assert result == {"path": "d/f.txt", "size": 6}
    assert (workspace / "d" / "f.txt").read_text() == "héllo"
    assert [p.name for p in (workspace / "d").iterdir()] == ["f.txt"]  # no temp file left


async def test_write_replaces_an_existing_file(workspace: Path) -> None:
    await run("filesystem_write", {"path": "notes.txt", "content": "bye"}, workspace)
    assert (workspace / "notes.txt").read_text() == "bye"
    assert (workspace / "notes.txt").stat().st_mode & 0o777 == 0o644


async def test_write_without_create_dirs_needs_the_directory(workspace: Path) -> None:
    with pytest.raises(FileNotFound):
        await run(
            "filesystem_write",
            {"path": "missing/x.txt", "content": "x", "create_dirs": False},
            workspace,
        )
    assert not (workspace / "missing").exists()


async def test_write_refuses_a_directory_or_a_file_as_parent(workspace: Path) -> None:
    (workspace / "sub").mkdir()
    with pytest.raises(ToolFailed, match="is a directory"):
        await run("filesystem_write", {"path": "sub", "content": "x"}, workspace)
    with pytest.raises(ToolFailed, match="not a directory"):
        await run("filesystem_write", {"path": "notes.txt/x", "content": "x"}, workspace)


async def test_write_refuses_content_over_one_mebibyte_in_bytes(workspace: Path) -> None:
    with pytest.raises(ToolFailed, match="larger than"):
        await run("filesystem_write", {"path": "big", "content": "é" * MAX_FILE_BYTES}, workspace)
    assert not (workspace / "big").exists()


async def test_write_refuses_symlink_escaping_workspace(workspace: Path, outside: Path) -> None:
    (workspace / "link.txt").symlink_to(outside / "secret.txt")
    (workspace / "door").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PathOutsideWorkspace):
        await run("filesystem_write", {"path": "link.txt", "content": "x"}, workspace)
    with pytest.raises(PathOutsideWorkspace):
        await run("filesystem_write", {"path": "door/new.txt", "content": "x"}, workspace)
    assert (outside / "secret.txt").read_text() == "private"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


async def test_write_onto_inside_symlink_replaces_the_link_not_its_target(
    workspace: Path,
) -> None:
    (workspace / "alias.txt").symlink_to("notes.txt")
    await run("filesystem_write", {"path": "alias.txt", "content": "new"}, workspace)
    assert not (workspace / "alias.txt").is_symlink()
    assert (workspace / "alias.txt").read_text() == "new"
    assert (workspace / "notes.txt").read_text() == "hello"


async def test_safe_mode_refuses_write_but_allows_reading(workspace: Path) -> None:
    with pytest.raises(ToolRefused) as raised:
        await run("filesystem_write", {"path": "x", "content": "x"}, workspace, mode="safe")
    assert (raised.value.status, raised.value.error) == (403, "tool_refused")
    assert not (workspace / "x").exists()
    assert await run("filesystem_read", {"path": "notes.txt"}, workspace, mode="safe")
    assert await run("filesystem_list", {}, workspace, mode="safe")


async def test_sandbox_mode_allows_writes(workspace: Path) -> None:
    result = await run("filesystem_write", {"path": "x", "content": "x"}, workspace, "sandbox")
    assert result == {"path": "x", "size": 1}


async def test_list_reports_names_types_and_sizes_sorted(workspace: Path) -> None:
    (workspace / "b_dir").mkdir()
    (workspace / "a_link").symlink_to("notes.txt")
    (workspace / "empty").write_bytes(b"")
    assert await run("filesystem_list", {}, workspace) == {
        "path": ".",
        "entries": [
            {"name": "a_link", "type": "symlink", "size": 0},
            {"name": "b_dir", "type": "directory", "size": 0},
            {"name": "empty", "type": "file", "size": 0},
            {"name": "notes.txt", "type": "file", "size": 5},
        ],
    }


async def test_list_a_subdirectory(workspace: Path) -> None:
    (workspace / "sub").mkdir()
    (workspace / "sub" / "x.py").write_text("pass\n")
    assert await run("filesystem_list", {"path": "sub/"}, workspace) == {
        "path": "sub",
        "entries": [{"name": "x.py", "type": "file", "size": 5}],
    }


async def test_list_shows_escaping_symlink_without_following_it(
    workspace: Path, outside: Path
) -> None:
    (workspace / "door").symlink_to(outside, target_is_directory=True)
    listing = await run("filesystem_list", {}, workspace)
    assert {"name": "door", "type": "symlink", "size": 0} in listing["entries"]
    with pytest.raises(PathOutsideWorkspace):
        await run("filesystem_list", {"path": "door"}, workspace)


async def test_list_truncates_at_one_thousand_entries(workspace: Path) -> None:
    for number in range(MAX_ENTRIES + 5):
        (workspace / f"f{number:05d}").touch()
    listing = await run("filesystem_list", {"path": "."}, workspace)
    assert listing["truncated"] is True
    assert len(listing["entries"]) == MAX_ENTRIES
    assert listing["entries"][0]["name"] == "f00000"


async def test_list_refuses_a_file_and_reports_a_missing_directory(workspace: Path) -> None:
    with pytest.raises(ToolFailed, match="not a directory"):
        await run("filesystem_list", {"path": "notes.txt"}, workspace)
    with pytest.raises(FileNotFound):
        await run("filesystem_list", {"path": "nowhere"}, workspace)


async def test_os_errors_become_tool_errors(workspace: Path) -> None:
    with pytest.raises(ToolFailed, match="file system refused"):
        await run("filesystem_write", {"path": "n" * 300, "content": "x"}, workspace)
