"""The built-in tools by name, argument validation, and running one under a mode."""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.protocols import Validator

from cadre.engine.tools.base import Tool, ToolContext, ToolNotFound, ToolRefused
from cadre.engine.tools.calculator import Calculator
from cadre.engine.tools.filesystem import (
    FilesystemEdit,
    FilesystemList,
    FilesystemRead,
    FilesystemWrite,
)
from cadre.engine.tools.python_ast import PythonAstParser
from cadre.engine.tools.search import FilesystemGlob, FilesystemGrep
from cadre.engine.tools.shell import Shell
from cadre.errors import ValidationFailed

TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        FilesystemRead(),
        FilesystemWrite(),
        FilesystemList(),
        FilesystemEdit(),
        FilesystemGlob(),
        FilesystemGrep(),
        PythonAstParser(),
        Calculator(),
        Shell(),
    )
}


def list_tools(category: str | None = None) -> list[Tool]:
    """The built-ins sorted by name, optionally only those of one category."""
    return [TOOLS[n] for n in sorted(TOOLS) if category is None or TOOLS[n].category == category]


def get_tool(name: str) -> Tool:
    tool = TOOLS.get(name)
    if tool is None:
        raise ToolNotFound(f"No tool named '{name}'.")
    return tool


def validate_args(tool: Tool, args: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``args`` with schema defaults filled in; 422 naming every bad argument.

    ``details`` maps ``args.<dotted path>`` to what is wrong there, so a caller
    (or a model) can fix all of them at once.
    """
    if not isinstance(args, dict):
        raise ValidationFailed(
            f"Arguments for '{tool.name}' must be an object.", details={"args": "not an object"}
        )
    filled = copy.deepcopy(args)
    details: dict[str, str] = {}
    for error in _validator(type(tool)).iter_errors(filled):
        for path, message in _located(error):
            details.setdefault(path, message)
    if details:
        raise ValidationFailed(
            f"Invalid arguments for '{tool.name}': check {', '.join(details)}.", details=details
        )
    return filled


async def execute_tool(name: str, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Find, check and run a tool; writing tools are refused in safe mode."""
    tool = get_tool(name)
    checked = validate_args(tool, args)
    if tool.writes and ctx.mode == "safe":
        raise ToolRefused(f"'{name}' writes or runs things, which safe mode does not allow.")
    return await tool.run(checked, ctx)


def _filling_defaults(cls: type[Validator]) -> type[Validator]:
    """A validator class that also fills in missing properties' schema defaults."""
    check_properties = cls.VALIDATORS["properties"]

    def properties(
        validator: Validator, props: dict[str, Any], instance: Any, schema: dict[str, Any]
    ) -> Iterator[ValidationError]:
        if isinstance(instance, dict):
            for name, sub in props.items():
                if isinstance(sub, dict) and "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from check_properties(validator, props, instance, schema)

    return validators.extend(cls, {"properties": properties})


_DefaultsValidator = _filling_defaults(Draft202012Validator)


@functools.cache
def _validator(tool_class: type[Tool]) -> Validator:
    """Built once per tool: compiling a schema costs more than checking against it."""
    _DefaultsValidator.check_schema(tool_class.parameters)
    return _DefaultsValidator(tool_class.parameters)


def _located(error: ValidationError) -> Iterator[tuple[str, str]]:
    """``(args.<path>, message)`` pairs: one per missing or unexpected property."""
    where = ["args", *(str(part) for part in error.absolute_path)]
    if error.validator == "required" and isinstance(error.instance, dict):
        for name in error.validator_value:
            if name not in error.instance:
                yield ".".join([*where, name]), "is required"
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {})
        for name in error.instance:
            if name not in known:
                yield ".".join([*where, name]), "is not an argument of this tool"
    else:
        yield ".".join(where), error.message
