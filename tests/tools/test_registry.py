"""The registry: which tools exist, how their arguments are checked, and safe mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from jsonschema import Draft202012Validator

from cadre.engine.tools import registry
from cadre.engine.tools.base import Tool, ToolContext, ToolNotFound, ToolRefused
from cadre.engine.tools.registry import TOOLS, execute_tool, get_tool, list_tools, validate_args
from cadre.errors import ValidationFailed


def test_builtins_are_registered_by_name() -> None:
    assert sorted(TOOLS) == [
        "calculator",
        "filesystem_edit",
        "filesystem_glob",
        "filesystem_grep",
        "filesystem_list",
        "filesystem_read",
        "filesystem_write",
        "python_ast_parser",
        "shell",
    ]
    assert all(name == tool.name for name, tool in TOOLS.items())


def test_only_edit_and_execute_tools_write() -> None:
    writers = [tool.name for tool in list_tools() if tool.writes]
    assert writers == ["filesystem_edit", "filesystem_write", "shell"]
    assert writers == [tool.name for tool in list_tools() if tool.kind != "read"]


@pytest.mark.parametrize("tool", list(TOOLS.values()), ids=list(TOOLS))
def test_every_schema_is_a_closed_draft_2020_12_object(tool: Tool) -> None:
    Draft202012Validator.check_schema(tool.parameters)
    assert tool.parameters["type"] == "object"
    assert tool.parameters["additionalProperties"] is False
    assert set(tool.parameters.get("required", [])) <= set(tool.parameters["properties"])
    assert tool.description and tool.category


def test_list_tools_is_sorted_and_filters_by_category() -> None:
    assert [tool.name for tool in list_tools()] == sorted(TOOLS)
    assert [tool.name for tool in list_tools("filesystem")] == [
        "filesystem_edit",
        "filesystem_glob",
        "filesystem_grep",
        "filesystem_list",
        "filesystem_read",
        "filesystem_write",
    ]
    assert [tool.name for tool in list_tools("shell")] == ["shell"]
    assert [tool.name for tool in list_tools("math")] == ["calculator"]
    assert [tool.name for tool in list_tools("code")] == ["python_ast_parser"]
    assert list_tools("nonexistent") == []


def test_get_tool_returns_the_one_instance() -> None:
    assert get_tool("calculator") is TOOLS["calculator"]


async def test_unknown_tool_is_tool_not_found(tmp_path: Path) -> None:
    with pytest.raises(ToolNotFound) as raised:
        await execute_tool("teleport", {}, ToolContext(workspace=tmp_path))
    assert (raised.value.status, raised.value.error) == (404, "tool_not_found")
    assert "teleport" in raised.value.message


def test_validate_args_fills_defaults_without_touching_the_input() -> None:
    args: dict[str, Any] = {"path": "a.txt"}
    assert validate_args(get_tool("filesystem_read"), args) == {
        "path": "a.txt",
        "encoding": "utf-8",
    }
    assert validate_args(get_tool("filesystem_write"), {"path": "a", "content": ""}) == {
        "path": "a",
        "content": "",
        "create_dirs": True,
    }
    assert validate_args(get_tool("filesystem_list"), {}) == {"path": "."}
    assert args == {"path": "a.txt"}


def test_validate_args_names_every_bad_field_with_its_path() -> None:
    with pytest.raises(ValidationFailed) as raised:
        validate_args(
            get_tool("filesystem_write"),
            {"path": "", "create_dirs": "yes", "extra": 1, "other": None},
        )
    error = raised.value
    assert (error.status, error.error) == (422, "validation_error")
    assert set(error.details) == {
        "args.path",
        "args.content",
        "args.create_dirs",
        "args.extra",
        "args.other",
    }
    assert error.details["args.content"] == "is required"
    assert error.details["args.extra"] == "is not an argument of this tool"
    assert "boolean" in error.details["args.create_dirs"]
    assert "filesystem_write" in error.message


def test_validate_args_reports_every_missing_required_field() -> None:
    with pytest.raises(ValidationFailed) as raised:
        validate_args(get_tool("filesystem_write"), {})
    assert raised.value.details == {"args.path": "is required", "args.content": "is required"}


def test_validate_args_reports_a_bad_enum_value() -> None:
    with pytest.raises(ValidationFailed) as raised:
        validate_args(get_tool("filesystem_read"), {"path": "a", "encoding": "klingon"})
    assert list(raised.value.details) == ["args.encoding"]
    assert "klingon" in raised.value.details["args.encoding"]


def test_validate_args_refuses_arguments_that_are_not_an_object() -> None:
    with pytest.raises(ValidationFailed) as raised:
        validate_args(get_tool("calculator"), ["1 + 1"])  # type: ignore[arg-type]
    assert raised.value.details == {"args": "not an object"}


class _Nested(Tool):
    """A tool with nested arguments, to show the dotted paths."""

    name = "nested"
    description = "test only"
    category = "test"
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "options": {
                "type": "object",
                "properties": {
                    "depth": {"type": "integer", "minimum": 0},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["depth"],
                "additionalProperties": False,
            }
        },
        "required": ["options"],
        "additionalProperties": False,
    }

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        return args


def test_validate_args_uses_dotted_paths_for_nested_fields() -> None:
    with pytest.raises(ValidationFailed) as raised:
        validate_args(_Nested(), {"options": {"tags": ["a", 2], "color": "red"}})
    assert set(raised.value.details) == {
        "args.options.depth",
        "args.options.tags.1",
        "args.options.color",
    }


def test_validators_are_built_once_per_tool() -> None:
    tool = get_tool("calculator")
    validate_args(tool, {"expression": "1"})
    before = registry._validator.cache_info()
    validate_args(tool, {"expression": "2"})
    after = registry._validator.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)


async def test_safe_mode_refuses_writing_tools_before_running_them(tmp_path: Path) -> None:
    with pytest.raises(ToolRefused) as raised:
        await execute_tool(
            "filesystem_write", {"path": "x", "content": "x"}, ToolContext(tmp_path, "safe")
        )
    assert (raised.value.status, raised.value.error) == (403, "tool_refused")
    assert not (tmp_path / "x").exists()


async def test_bad_arguments_are_reported_before_the_safe_mode_refusal(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed):
        await execute_tool("filesystem_write", {}, ToolContext(tmp_path, "safe"))


@pytest.mark.parametrize("mode", ["safe", "sandbox", "full"])
async def test_reading_tools_run_in_every_mode(tmp_path: Path, mode: str) -> None:
    ctx = ToolContext(workspace=tmp_path, mode=mode)  # type: ignore[arg-type]
    assert await execute_tool("filesystem_list", {}, ctx) == {"path": ".", "entries": []}
