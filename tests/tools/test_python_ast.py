"""python_ast_parser: an outline of Python code, without running any of it."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from cadre.engine.tools import python_ast
from cadre.engine.tools.base import AstLimits, ToolContext, ToolFailed
from cadre.engine.tools.python_ast import SourceTooLarge, outline, parse_isolated
from cadre.engine.tools.registry import execute_tool

SOURCE = textwrap.dedent(
    '''\
    """A module."""
    import os, sys as system
    from collections.abc import Iterator
    from . import sibling
    from ..pkg.mod import a, b as bee


    def top(x, /, y=1, *args, z, **kwargs):
        def helper():
            return lambda q: q
        return helper


    async def fetch(url: str) -> bytes:
        import json
        return b""


    class Base: ...


    class Child(Base, metaclass=type):
        attr = 1

        def __init__(self) -> None:
            if True:
                def hidden(): ...

        async def run(self):
            class Inner(dict[str, int]):
                def method(self): ...

        @property
        def name(self): ...

    try:
        import fast
    except ImportError:
        from slow import fast
    '''
)


def test_reports_functions_with_qualified_names_args_and_async() -> None:
    assert outline(SOURCE)["functions"] == [
        {"name": "top", "lineno": 8, "args": ["x", "y", "*args", "z", "**kwargs"], "async": False},
        {"name": "top.helper", "lineno": 9, "args": [], "async": False},
        {"name": "fetch", "lineno": 14, "args": ["url"], "async": True},
        {"name": "Child.__init__", "lineno": 25, "args": ["self"], "async": False},
        {"name": "Child.__init__.hidden", "lineno": 27, "args": [], "async": False},
        {"name": "Child.run", "lineno": 29, "args": ["self"], "async": True},
        {"name": "Child.run.Inner.method", "lineno": 31, "args": ["self"], "async": False},
        {"name": "Child.name", "lineno": 34, "args": ["self"], "async": False},
    ]


def test_reports_classes_with_bases_and_methods() -> None:
    assert outline(SOURCE)["classes"] == [
        {"name": "Base", "lineno": 19, "bases": [], "methods": []},
        {
            "name": "Child",
            "lineno": 22,
            "bases": ["Base"],
            "methods": ["__init__", "run", "name"],
        },
        {
            "name": "Child.run.Inner",
            "lineno": 30,
            "bases": ["dict[str, int]"],
            "methods": ["method"],
        },
    ]


def test_reports_imports_anywhere_including_relative_ones() -> None:
    assert outline(SOURCE)["imports"] == [
        {"module": "os", "names": [], "lineno": 2},
        {"module": "sys", "names": [], "lineno": 2},
        {"module": "collections.abc", "names": ["Iterator"], "lineno": 3},
        {"module": ".", "names": ["sibling"], "lineno": 4},
        {"module": "..pkg.mod", "names": ["a", "b"], "lineno": 5},
        {"module": "json", "names": [], "lineno": 15},
        {"module": "fast", "names": [], "lineno": 37},
        {"module": "slow", "names": ["fast"], "lineno": 39},
    ]


def test_parses_real_code_from_the_standard_library() -> None:
    source = Path(textwrap.__file__).read_text()
    result = outline(source)
    names = {function["name"] for function in result["functions"]}
    assert {"dedent", "wrap", "TextWrapper.fill", "TextWrapper._wrap_chunks"} <= names
    assert {"module": "re", "names": [], "lineno": 8} in result["imports"]


async def test_runs_as_a_tool_in_safe_mode(tmp_path: Path) -> None:
    ctx = ToolContext(workspace=tmp_path, mode="safe")
    result = await execute_tool("python_ast_parser", {"code": "def f(a): ...\n"}, ctx)
    assert result == {
        "functions": [{"name": "f", "lineno": 1, "args": ["a"], "async": False}],
        "classes": [],
        "imports": [],
    }


def test_empty_code_has_an_empty_outline() -> None:
    assert outline("") == {"functions": [], "classes": [], "imports": []}


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(ToolFailed, match=r"line 2") as raised:
        outline("x = 1\ndef (:\n")
    assert raised.value.error == "tool_error"
    assert raised.value.details["line"] == 2


def test_code_nesting_too_deep_to_parse_is_a_tool_error() -> None:
    with pytest.raises(ToolFailed):
        outline("x = " + "a." * 100_000 + "b")


def test_deep_expressions_that_parse_are_outlined_without_recursing_into_them() -> None:
    code = "x = " + "-" * 2000 + "1\ndef after(): ...\n"  # NodeVisitor would recurse out
    assert outline(code)["functions"][0]["name"] == "after"


def test_null_bytes_are_a_tool_error() -> None:
    with pytest.raises(ToolFailed):
        outline("x = 1\x00")


# -- in a resource-limited child process --------------------------------------------------


async def test_the_tool_parses_in_a_child_process(tmp_path: Path) -> None:
    ctx = ToolContext(workspace=tmp_path, mode="safe")
    result = await execute_tool("python_ast_parser", {"code": SOURCE}, ctx)
    assert result == outline(SOURCE)


async def test_a_source_over_the_byte_limit_is_refused_before_any_parse(tmp_path: Path) -> None:
    ctx = ToolContext(workspace=tmp_path, ast_limits=AstLimits(max_source_bytes=1024))
    with pytest.raises(SourceTooLarge) as raised:
        await execute_tool("python_ast_parser", {"code": "é" * 513}, ctx)  # 1026 bytes
    assert raised.value.status == 422
    assert raised.value.details == {"args.code": "longer than 1024 bytes"}
    assert await execute_tool("python_ast_parser", {"code": "#" * 1024}, ctx) == outline("")


async def test_a_parse_that_outgrows_the_childs_memory_is_a_tool_error(monkeypatch) -> None:
    monkeypatch.setattr(python_ast, "WORKER_MEMORY_BYTES", 64 * 1024 * 1024)
    code = "x = [" + "1, " * 80_000 + "]\n"  # parses fine with room to spare
    with pytest.raises(ToolFailed, match="limit"):
        await parse_isolated(code, AstLimits())


@pytest.mark.parametrize(
    "code",
    ["(" * 100_000 + ")" * 100_000, "x = " + "-" * 200_000 + "1", "x = " + "1+" * 120_000 + "1"],
)
async def test_pathological_sources_are_tool_errors(code: str) -> None:
    with pytest.raises(ToolFailed):
        await parse_isolated(code, AstLimits())


async def test_at_most_max_workers_children_parse_at_once(monkeypatch) -> None:
    running = peak = 0
    spawn = asyncio.create_subprocess_exec

    async def counting(*args, **kwargs):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        process = await spawn(*args, **kwargs)
        wait = process.wait

        async def waited():
            nonlocal running
            code = await wait()
            running -= 1
            return code

        process.wait = waited
        return process

    monkeypatch.setattr(asyncio, "create_subprocess_exec", counting)
    code = "def f(): ...\n" * 2000
    replies = await asyncio.gather(*(parse_isolated(code, AstLimits()) for _ in range(6)))
    assert all(len(r["functions"]) == 2000 for r in replies)
    assert peak <= 2
