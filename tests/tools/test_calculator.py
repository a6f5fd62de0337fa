"""The calculator: arithmetic by walking the syntax tree, with every costly step refused."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from cadre.engine.tools.base import ToolContext, ToolFailed
from cadre.engine.tools.calculator import evaluate
from cadre.engine.tools.registry import execute_tool
from cadre.errors import ValidationFailed


@pytest.mark.parametrize(
    ("expression", "result"),
    [
        ("2 * (3 + 4)", 14),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("-3 % 5", 2),
        ("2 ** 10", 1024),
        ("2 ** -1", 0.5),
        ("+-+3", -3),
        ("1.5e3 + 0.5", 1500.5),
        ("sqrt(16)", 4.0),
        ("abs(-2.5)", 2.5),
        ("round(2.567, 2)", 2.57),
        ("round(2.5)", 2),
        ("min(3, 1, 2) + max(4, 5)", 6),
        ("log(e)", 1.0),
        ("log(8, 2)", 3.0),
        ("exp(0)", 1.0),
        ("floor(2.7) + ceil(2.1)", 5),
        ("sin(0) + cos(0) + tan(0)", 1.0),
        ("pi", math.pi),
        ("  1 + 1  ", 2),
        ("+".join(["1"] * 500), 500),
    ],
)
def test_evaluates_arithmetic(expression: str, result: float) -> None:
    assert evaluate(expression) == result


async def test_runs_as_a_tool_returning_result(tmp_path: Path) -> None:
    ctx = ToolContext(workspace=tmp_path, mode="safe")
    assert await execute_tool("calculator", {"expression": "2 * (3 + 4)"}, ctx) == {"result": 14}


def test_integers_beyond_64_bits_come_back_as_floats() -> None:
    """A JSON reply (orjson) cannot carry larger integers exactly."""
    assert evaluate("2 ** 63 - 1") == 2**63 - 1
    assert evaluate("2 ** 64") == float(2**64)
    assert isinstance(evaluate("2 ** 64"), float)
    assert evaluate("10 ** 999 // 10 ** 998") == 10  # big intermediates are fine


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1 / 0", "Division by zero"),
        ("5 % 0", "Division by zero"),
        ("0 ** -1", "Division by zero"),
        ("__import__('os')", "Unknown function '__import__'"),
        ("open('x')", "Unknown function 'open'"),
        ("x + 1", "Unknown name 'x'"),
        ("True", "Only real numbers"),
        ("True + 1", "Only real numbers"),
        ("'a' * 3", "Only real numbers"),
        ("1j", "not a real number"),
        ("(-8) ** 0.5", "not a real number"),
        ("(1).__class__", "not allowed"),
        ("[1][0]", "not allowed"),
        ("1 if 1 else 2", "not allowed"),
        ("1 < 2", "not allowed"),
        ("1 << 2", "not allowed"),
        ("~1", "not allowed"),
        ("round(2, ndigits=1)", "not allowed"),
        ("max(*[1])", "not allowed"),
        ("(lambda: 1)()", "not allowed"),
        ("sqrt(-1)", "math domain error"),
        ("log(0)", "math domain error"),
        ("min()", "Cannot evaluate"),
        ("1 +", "not an arithmetic expression"),
        ("import os", "not an arithmetic expression"),
        ("1e308 * 10", "no finite value"),
        ("1e308 * 10 - 1e308 * 10", "no finite value"),
        ("exp(1000)", "too large"),
        ("1e300 ** 2", "too large"),
        ("10 ** 400", "too large"),
        ("floor(1e308 * 10)", "too large"),
    ],
)
def test_refuses_with_a_clear_message(expression: str, message: str) -> None:
    with pytest.raises(ToolFailed, match=message.replace("(", r"\(")) as raised:
        evaluate(expression)
    assert (raised.value.status, raised.value.error) == (422, "tool_error")


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("2 ** 10000000", "Exponents are limited to 10000."),
        ("9 ** 9 ** 9", "Exponents are limited to 10000."),
        ("2 ** 9999.5", "The result is too large."),
        ("(10 ** 999) ** 2", "The result is too large."),
        ("10 ** 999 * 10 ** 999 * 10 ** 999", "The result is too large."),
        ("round(5, -10 ** 7)", "round() takes at most 1000 digits."),
        ("-" * 999 + "1", "The expression nests too deeply."),
        ("(" * 300 + "1" + ")" * 300, "is not an arithmetic expression."),
    ],
)
def test_refuses_costly_expressions_by_a_check_before_computing(
    expression: str, reason: str
) -> None:
    with pytest.raises(ToolFailed) as raised:
        evaluate(expression)
    assert str(raised.value.message).endswith(reason)


async def test_expression_length_is_limited_by_the_schema(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed) as raised:
        await execute_tool("calculator", {"expression": "1" * 1001}, ToolContext(tmp_path))
    assert list(raised.value.details) == ["args.expression"]
