"""Measuring and bounding free-form JSON (cadre.json_limits)."""

from __future__ import annotations

import orjson
import pytest

from cadre.errors import ValidationFailed
from cadre.json_limits import REPLY_DEPTH, check_depth, check_size, depth, shown


def nested(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, 0), ("s", 0), ([], 1), ({}, 1), ([[1]], 2), ({"a": [{"b": None}]}, 3), (nested(7), 7)],
)
def test_depth_counts_container_levels(value, expected):
    assert depth(value, 100) == expected


def test_depth_stops_just_past_the_limit_and_never_recurses():
    assert depth(nested(100_000), 32) == 33  # far past Python's recursion limit


def test_check_depth_names_each_member_too_deep():
    body = {"task": "t", "inputs": nested(33), "ok": nested(32)}
    with pytest.raises(ValidationFailed) as raised:
        check_depth(body, 32)
    assert raised.value.details == {"body.inputs": "nested deeper than 32 levels"}
    check_depth({"inputs": nested(32)}, 32)


def test_check_size_counts_compact_json_bytes():
    value = {"k": "x" * 100}
    check_size(value, len(orjson.dumps(value)), "body.inputs")
    with pytest.raises(ValidationFailed) as raised:
        check_size(value, len(orjson.dumps(value)) - 1, "body.inputs")
    assert raised.value.details == {
        "body.inputs": f"larger than {len(orjson.dumps(value)) - 1} bytes as JSON"
    }


def test_shown_replaces_only_values_too_deep_to_serialise_keeping_the_envelope():
    assert shown(nested(REPLY_DEPTH)) == nested(REPLY_DEPTH)
    event = {"execution_id": "e", "seq": 3, "type": "tool_call", "args": nested(REPLY_DEPTH + 5)}
    replaced = shown(event, keep=("execution_id", "seq", "type", "timestamp"))
    assert replaced["execution_id"] == "e" and replaced["seq"] == 3
    assert "args" not in replaced and "_omitted" in replaced
    orjson.dumps(replaced)
