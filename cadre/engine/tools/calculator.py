"""Arithmetic on an expression, evaluated by walking its syntax tree (never ``eval``)."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from cadre.engine.tools.base import Tool, ToolContext, ToolFailed

MAX_EXPONENT = 10_000
MAX_MAGNITUDE = 10**1000
MAX_DEPTH = 50

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "log": math.log,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "floor": math.floor,
    "ceil": math.ceil,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}


class Calculator(Tool):
    name = "calculator"
    description = "Evaluate an arithmetic expression: + - * / // % **, parentheses, math functions"
    category = "math"
    parameters = {
        "type": "object",
        "properties": {"expression": {"type": "string", "minLength": 1, "maxLength": 1000}},
        "required": ["expression"],
        "additionalProperties": False,
    }

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        expression = args["expression"]
        try:
            tree = ast.parse(expression, mode="eval")
            value = _evaluate(tree.body, 0)
        except SyntaxError as exc:
            raise ToolFailed(f"'{expression}' is not an arithmetic expression.") from exc
        except ZeroDivisionError as exc:
            raise ToolFailed("Division by zero.") from exc
        except (OverflowError, ValueError, TypeError) as exc:
            raise ToolFailed(f"Cannot evaluate '{expression}': {exc}.") from exc
        if isinstance(value, float) and not math.isfinite(value):
            raise ToolFailed(f"'{expression}' has no finite value.")
        if isinstance(value, int) and abs(value) > MAX_MAGNITUDE:
            raise ToolFailed("The result is too large.")
        return {"result": value}


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolFailed("Only numbers are allowed.")
    return value


def _evaluate(node: ast.AST, depth: int) -> int | float:
    if depth > MAX_DEPTH:
        raise ToolFailed("The expression nests too deeply.")
    if isinstance(node, ast.Constant):
        return _number(node.value)
    if isinstance(node, ast.Name):
        if node.id not in _CONSTANTS:
            raise ToolFailed(f"Unknown name '{node.id}'.")
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand, depth + 1))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left = _evaluate(node.left, depth + 1)
        right = _evaluate(node.right, depth + 1)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        result = _BINARY[type(node.op)](left, right)
        if isinstance(result, complex):
            raise ToolFailed("The result is not a real number.")
        if isinstance(result, int) and abs(result) > MAX_MAGNITUDE:
            raise ToolFailed("The result is too large.")
        return result
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        function = _FUNCTIONS.get(node.func.id)
        if function is None:
            raise ToolFailed(f"Unknown function '{node.func.id}'.")
        return _number(function(*(_evaluate(arg, depth + 1) for arg in node.args)))
    raise ToolFailed(f"'{ast.unparse(node)}' is not allowed in an arithmetic expression.")


def _check_power(base: int | float, exponent: int | float) -> None:
    """Refuse powers whose result would be astronomically large before computing them."""
    if abs(exponent) > MAX_EXPONENT:
        raise ToolFailed(f"Exponents are limited to {MAX_EXPONENT}.")
    if abs(base) > 1 and exponent > 0 and exponent * math.log10(abs(base)) > 1000:
        raise ToolFailed("The result is too large.")
