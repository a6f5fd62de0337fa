"""The fast body check (jsonschema-rs) never lets through a body Python jsonschema refuses."""

from __future__ import annotations

from typing import Any

import pytest
from connexion.spec import Specification
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cadre.connexion.validation import CompiledSchema, _plain_json_schema
from cadre.spec_docs import SPEC_PATH
from tests.conftest import assert_problem


def json_body_schemas() -> dict[str, dict]:
    """operationId -> the resolved JSON request body schema, for every operation with one."""
    spec = Specification.load(SPEC_PATH)
    found = {}
    for item in spec["paths"].values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                found[operation["operationId"]] = content["application/json"]["schema"]
    return found


SCHEMAS = json_body_schemas()
# Values chosen to sit on the edges the spec draws: null, empty, too long, wrong type,
# integral floats, trailing newlines, non-ASCII, nested containers.
EDGES = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, -1, 2, 3, 1.0, 0.5, 2.5, -0.0, 10**12, 2**63]),
    st.sampled_from(["", "a", "echo", "openai", "active", "a\n", "é", "a b", "a@b.c", "a@b"]),
    st.sampled_from([8, 64, 128, 200, 65536]).flatmap(
        lambda n: st.sampled_from(["x" * n, "x" * (n + 1)])
    ),
    st.text(max_size=8),
    st.lists(st.sampled_from(["a", "a", "", 1, None]), max_size=3),
    st.dictionaries(st.sampled_from(["a", "tokens", "echo"]), st.integers(), max_size=2),
)


def bodies(schema: dict) -> st.SearchStrategy[Any]:
    """Objects built from the schema's own property names (plus a stranger), edge values inside."""
    names = [*sorted(schema.get("properties", {})), "unexpected"]
    nested = st.dictionaries(st.sampled_from(names), EDGES, max_size=3)
    value = st.one_of(EDGES, nested)
    # Mostly one or two members, so that a single bad value is often the only one.
    return st.one_of(
        EDGES,
        st.dictionaries(st.sampled_from(names), value, min_size=1, max_size=1),
        st.dictionaries(st.sampled_from(names), value, max_size=2),
        st.dictionaries(st.sampled_from(names), value),
    )


def test_every_json_request_body_is_covered():
    assert {"createAgent", "registerUser", "executeAgent"} <= set(SCHEMAS)


@pytest.mark.parametrize("operation_id", sorted(SCHEMAS))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fast_check_is_never_laxer_than_python_jsonschema(operation_id, data):
    compiled = CompiledSchema(SCHEMAS[operation_id])
    body = data.draw(bodies(SCHEMAS[operation_id]))
    python_errors = list(compiled.detailed.iter_errors(body))
    if compiled.fast.is_valid(body):
        assert not python_errors, f"jsonschema-rs accepted {body!r}: {python_errors[0].message}"
    # and the two together give exactly Python's verdict
    assert bool(compiled.errors(body)) == bool(python_errors)


def test_nullable_becomes_a_null_type_and_a_null_enum_member():
    schema = {"type": "string", "nullable": True, "enum": ["a", None]}
    assert _plain_json_schema(schema)["type"] == ["string", "null"]
    assert _plain_json_schema({"type": "string", "nullable": True, "enum": ["a"]})["enum"] == [
        "a",
        None,
    ]
    assert _plain_json_schema({"type": "string", "nullable": False}) == {
        "type": "string",
        "nullable": False,
    }


def test_a_pattern_ending_in_dollar_refuses_a_trailing_newline(client, alice):
    # ECMA-262's $ ends the string; Python's alone would let "coder\n" through.
    reply = client.post("/api/v1/agents", json={"name": "coder\n"}, headers=alice.headers)
    details = assert_problem(reply, 422, "validation_error")["details"]
    assert "body.name" in details
    body = {"email": "nl@example.com\n", "username": "nl\n", "password": "long-enough-password-1"}
    details = assert_problem(client.post("/api/v1/auth/register", json=body), 422)["details"]
    assert {"body.email", "body.username"} <= set(details)
    agent = client.post("/api/v1/agents", json={"name": "coder"}, headers=alice.headers)
    assert agent.status_code == 201, agent.text
