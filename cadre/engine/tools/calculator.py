"""Arithmetic on an expression, evaluated by walking its syntax tree (never ``eval``).

Only numbers, arithmetic operators and a few math functions are allowed, and
every step that could take unbounded time or memory (big powers, rounding to
huge digit counts, deep nesting) is refused before it is computed.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from cadre.engine.tools.base import Tool, ToolContext, ToolFailed

MAX_EXPONENT = 10_000
MAX_DIGITS = 1000  # no integer along the way may exceed about 10**MAX_DIGITS
MAX_BITS = math.ceil(MAX_DIGITS * math.log2(10))
MAX_DEPTH = 500  # "1+1+...+1" within the 1000-character limit nests 500 deep
MAX_ROUND_DIGITS = 1000  # round(5, -10**7) would build 10**10**7
INT_RANGE = range(-(2**63), 2**64)  # what a JSON reply (orjson) carries exactly

Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
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
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}


class Calculator(Tool):
    name = "calculator"
    description = (
        "Evaluate an arithmetic expression: numbers, + - * / // % **, parentheses, "
        "sqrt abs round min max log exp sin cos tan floor ceil, pi and e"
    )
    category = "math"
    kind = "read"
    parameters = {
        "type": "object",
        "properties": {"expression": {"type": "string", "minLength": 1, "maxLength": 1000}},
        "required": ["expression"],
        "additionalProperties": False,
    }

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        return {"result": evaluate(args["expression"])}


def evaluate(expression: str) -> Number:
    """The value of ``expression``, as a number a JSON reply can carry."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ToolFailed(f"'{expression}' is not an arithmetic expression.") from exc
    try:
        value = _evaluate(tree.body, 0)
        if isinstance(value, int) and value not in INT_RANGE:
            value = float(value)
    except ZeroDivisionError as exc:
        raise ToolFailed("Division by zero.") from exc
    except OverflowError as exc:
        raise ToolFailed("The result is too large.") from exc
    except (ValueError, TypeError) as exc:
        raise ToolFailed(f"Cannot evaluate '{expression}': {exc}.") from exc
    if not math.isfinite(value):
        raise ToolFailed(f"'{expression}' has no finite value.")
    return value


def _evaluate(node: ast.expr, depth: int) -> Number:
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
        return _number(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        function = _FUNCTIONS.get(node.func.id)
        if function is None:
            raise ToolFailed(f"Unknown function '{node.func.id}'.")
        arguments = [_evaluate(argument, depth + 1) for argument in node.args]
        if function is round and len(arguments) == 2:
            _check_round_digits(arguments[1])
        return _number(function(*arguments))
    raise ToolFailed(f"'{ast.unparse(node)}' is not allowed in an arithmetic expression.")


def _number(value: object) -> Number:
    """Refuse what is not a real number (booleans, strings, complex results, huge ints)."""
    if isinstance(value, complex):
        raise ToolFailed("The result is not a real number.")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolFailed(f"Only real numbers are allowed, not {value!r}.")
    if isinstance(value, int) and value.bit_length() > MAX_BITS:
        raise ToolFailed("The result is too large.")
    return value


def _check_power(base: Number, exponent: Number) -> None:
    """Refuse powers whose result would be astronomically large before computing them."""
    if abs(exponent) > MAX_EXPONENT:
        raise ToolFailed(f"Exponents are limited to {MAX_EXPONENT}.")
    if abs(base) > 1 and exponent > 0 and exponent * math.log10(abs(base)) > MAX_DIGITS:
        raise ToolFailed("The result is too large.")


def _check_round_digits(digits: Number) -> None:
    if isinstance(digits, int) and abs(digits) > MAX_ROUND_DIGITS:
        raise ToolFailed(f"round() takes at most {MAX_ROUND_DIGITS} digits.")
