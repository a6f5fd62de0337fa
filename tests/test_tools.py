"""The built-in tools on their own: confinement, modes, argument checks, edge cases."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from cadre.engine.tools.base import (
    FileNotFound,
    PathOutsideWorkspace,
    ToolContext,
    ToolFailed,
    ToolNotFound,
    ToolRefused,
)
from cadre.engine.tools.registry import execute_tool, list_tools
from cadre.engine.tools.workspace import resolve_inside, sandbox_copy, user_workspace
from cadre.errors import ValidationFailed


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "notes.txt").write_text("hello")
    return root


def run(name: str, args: dict, workspace: Path, mode: str = "full"):
    import asyncio

    return asyncio.run(execute_tool(name, args, ToolContext(workspace=workspace, mode=mode)))


class TestConfinement:
    @pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../x", "~/x", "ok\x00.txt"])
    def test_paths_that_leave_the_workspace_are_refused(self, workspace, path):
        with pytest.raises(PathOutsideWorkspace):
            resolve_inside(workspace, path)

    def test_symlink_to_outside_is_refused_not_followed(self, workspace, tmp_path):
        secret = tmp_path / "secret.txt"
        secret.write_text("private")
        (workspace / "link.txt").symlink_to(secret)
        with pytest.raises(PathOutsideWorkspace):
            run("filesystem_read", {"path": "link.txt"}, workspace)
        with pytest.raises(PathOutsideWorkspace):
            run("filesystem_write", {"path": "link.txt", "content": "x"}, workspace)
        assert secret.read_text() == "private"

    def test_symlinked_directory_escaping_is_refused(self, workspace, tmp_path):
        outside = tmp_path / "outside"
        outside.mkdir()
        (workspace / "door").symlink_to(outside, target_is_directory=True)
        with pytest.raises(PathOutsideWorkspace):
            run("filesystem_write", {"path": "door/x.txt", "content": "x"}, workspace)
        assert not (outside / "x.txt").exists()

    def test_symlink_inside_the_workspace_is_fine(self, workspace):
        (workspace / "alias.txt").symlink_to(workspace / "notes.txt")
        assert run("filesystem_read", {"path": "alias.txt"}, workspace)["content"] == "hello"


class TestFilesystem:
    def test_write_then_read_and_list(self, workspace):
        assert run("filesystem_write", {"path": "d/e.txt", "content": "héllo"}, workspace) == {
            "path": "d/e.txt",
            "size": 6,
        }
        assert run("filesystem_read", {"path": "d/e.txt"}, workspace) == {
            "content": "héllo",
            "size": 6,
        }
        listing = run("filesystem_list", {}, workspace)
        assert listing["entries"] == [
            {"name": "d", "type": "directory", "size": 0},
            {"name": "notes.txt", "type": "file", "size": 5},
        ]

    def test_missing_file_and_directory_and_bad_encoding(self, workspace):
        with pytest.raises(FileNotFound):
            run("filesystem_read", {"path": "nope.txt"}, workspace)
        with pytest.raises(ToolFailed):
            run("filesystem_read", {"path": "."}, workspace)
        (workspace / "bin").write_bytes(b"\xff\xfe\x00")
        with pytest.raises(ToolFailed):
            run("filesystem_read", {"path": "bin"}, workspace)

    def test_safe_mode_refuses_writes_but_allows_reads(self, workspace):
        with pytest.raises(ToolRefused):
            run("filesystem_write", {"path": "x", "content": "x"}, workspace, mode="safe")
        assert not (workspace / "x").exists()
        assert run("filesystem_read", {"path": "notes.txt"}, workspace, mode="safe")

    def test_every_bad_argument_is_named(self, workspace):
        with pytest.raises(ValidationFailed) as raised:
            run("filesystem_read", {"encoding": "klingon", "extra": 1}, workspace)
        assert set(raised.value.details) == {"args.path", "args.encoding", "args.extra"}

    def test_unknown_tool(self, workspace):
        with pytest.raises(ToolNotFound):
            run("teleport", {}, workspace)

    def test_list_by_category(self):
        assert {t.name for t in list_tools("filesystem")} == {
            "filesystem_read",
            "filesystem_write",
            "filesystem_list",
        }


class TestCalculator:
    @pytest.mark.parametrize(
        ("expression", "result"),
        [("2 * (3 + 4)", 14), ("7 // 2", 3), ("2 ** 10", 1024), ("-3 % 5", 2), ("sqrt(16)", 4.0)],
    )
    def test_arithmetic(self, workspace, expression, result):
        assert run("calculator", {"expression": expression}, workspace) == {"result": result}

    @pytest.mark.parametrize(
        "expression",
        [
            "1/0",
            "__import__('os')",
            "True + 1",
            "x",
            "2 ** 10000000",
            "9 ** 9 ** 9",
            "[1][0]",
            "1e308 * 10",
        ],
    )
    def test_refused_quickly_and_clearly(self, workspace, expression):
        started = time.monotonic()
        with pytest.raises(ToolFailed):
            run("calculator", {"expression": expression}, workspace)
        assert time.monotonic() - started < 1


class TestPythonAst:
    def test_reports_functions_classes_and_imports(self, workspace):
        code = (
            "import os\n"
            "from a.b import c, d\n"
            "class K(Base):\n"
            "    def m(self, x, *a, k, **kw): ...\n"
            "async def f(): ...\n"
        )
        result = run("python_ast_parser", {"code": code}, workspace)
        assert result["imports"] == [
            {"module": "os", "names": [], "lineno": 1},
            {"module": "a.b", "names": ["c", "d"], "lineno": 2},
        ]
        assert result["classes"] == [
            {"name": "K", "lineno": 3, "bases": ["Base"], "methods": ["m"]}
        ]
        assert result["functions"] == [
            {"name": "K.m", "lineno": 4, "args": ["self", "x", "*a", "k", "**kw"], "async": False},
            {"name": "f", "lineno": 5, "args": [], "async": True},
        ]

    def test_syntax_error_names_the_line(self, workspace):
        with pytest.raises(ToolFailed) as raised:
            run("python_ast_parser", {"code": "x = 1\ndef (:"}, workspace)
        assert raised.value.details["line"] == 2


class TestWorkspace:
    async def test_sandbox_copy_is_isolated_and_removed(self, workspace):
        async with sandbox_copy(workspace) as copy:
            assert (copy / "notes.txt").read_text() == "hello"
            (copy / "notes.txt").write_text("changed")
            (copy / "new.txt").write_text("new")
        assert (workspace / "notes.txt").read_text() == "hello"
        assert not (workspace / "new.txt").exists()
        assert not copy.exists()

    async def test_sandbox_copy_is_removed_when_the_body_fails(self, workspace):
        with pytest.raises(RuntimeError):
            async with sandbox_copy(workspace) as copy:
                raise RuntimeError("boom")
        assert not copy.exists()

    def test_user_workspace_refuses_odd_ids(self, tmp_path):
        assert user_workspace(tmp_path, "usr_01ABC").is_dir()
        for bad in ("../x", "a/b", ""):
            with pytest.raises(ValueError):
                user_workspace(tmp_path, bad)
        assert not os.path.exists(tmp_path.parent / "x")
