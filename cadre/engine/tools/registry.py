"""The built-in tools by name, argument validation, and running one under a mode."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator, validators

from cadre.engine.tools.base import Tool, ToolContext, ToolNotFound, ToolRefused
from cadre.engine.tools.calculator import Calculator
from cadre.engine.tools.filesystem import FilesystemList, FilesystemRead, FilesystemWrite
from cadre.engine.tools.python_ast import PythonAstParser
from cadre.errors import ValidationFailed

TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        FilesystemRead(),
        FilesystemWrite(),
        FilesystemList(),
        PythonAstParser(),
        Calculator(),
    )
}


def _with_defaults(cls: type) -> type:
    """A validator class that also fills in schema defaults."""
    validate_properties = cls.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):  # type: ignore[no-untyped-def]
        if isinstance(instance, dict):
            for name, sub in props.items():
                if isinstance(sub, dict) and "default" in sub:
                    instance.setdefault(name, sub["default"])
        yield from validate_properties(validator, props, instance, schema)

    return validators.extend(cls, {"properties": properties})


_Validator = _with_defaults(Draft202012Validator)
_VALIDATORS = {name: _Validator(tool.parameters) for name, tool in TOOLS.items()}


def list_tools(category: str | None = None) -> list[Tool]:
    return [TOOLS[n] for n in sorted(TOOLS) if category is None or TOOLS[n].category == category]


def get_tool(name: str) -> Tool:
    tool = TOOLS.get(name)
    if tool is None:
        raise ToolNotFound(f"No tool named '{name}'.")
    return tool


def validate_args(tool: Tool, args: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``args`` with defaults filled in; 422 naming every bad argument."""
    filled = dict(args)
    errors = list(_VALIDATORS[tool.name].iter_errors(filled))
    if errors:
        details: dict[str, str] = {}
        for error in errors:
            path = ".".join(str(p) for p in error.absolute_path)
            if error.validator == "required":
                missing = [n for n in error.validator_value if n not in error.instance]
                path = ".".join(filter(None, [path, *missing[:1]]))
            elif error.validator == "additionalProperties":
                extra = [n for n in error.instance if n not in error.schema.get("properties", {})]
                path = ".".join(filter(None, [path, *extra[:1]]))
            details.setdefault("args." + path if path else "args", error.message)
        raise ValidationFailed(
            f"Invalid arguments for '{tool.name}': check {', '.join(details)}.", details=details
        )
    return filled


async def execute_tool(name: str, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    tool = get_tool(name)
    checked = validate_args(tool, args)
    if tool.writes and ctx.mode == "safe":
        raise ToolRefused(f"'{name}' writes or runs things, which safe mode does not allow.")
    return await tool.run(checked, ctx)
