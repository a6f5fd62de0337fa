"""python_ast_parser: an outline of Python code, without running any of it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cadre.engine.tools.base import ToolContext, ToolFailed
from cadre.engine.tools.python_ast import outline
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
