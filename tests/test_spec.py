"""The contract itself: valid, fully routed, and mirrored by models_gen/."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from connexion.exceptions import ResolverError
from openapi_spec_validator import validate
from starlette.routing import WebSocketRoute

from cadre.connexion.resolver import CAMEL_CASE, handler_name, snake_case
from cadre.spec_docs import authored_spec
from tests.conftest import assert_problem

ROOT = Path(__file__).resolve().parent.parent


def test_openapi_document_is_valid():
    validate(authored_spec())


def _operations(spec: dict) -> list[tuple[str, str, dict]]:
    return [
        (method, path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "operationId" in operation
    ]


def test_every_operation_id_is_short_camel_case_and_unique():
    ids = [operation["operationId"] for _, _, operation in _operations(authored_spec())]
    assert len(ids) == len(set(ids))
    for operation_id in ids:
        assert CAMEL_CASE.match(operation_id) and len(operation_id) <= 32, operation_id


def test_every_operation_id_resolves_to_a_handler_function():
    for method, path, operation in _operations(authored_spec()):
        module_name, _, function = handler_name(
            operation["operationId"], operation.get("tags")
        ).rpartition(".")
        assert callable(getattr(importlib.import_module(module_name), function)), (method, path)


def test_handler_modules_are_named_after_spec_tags():
    spec = authored_spec()
    tags = {tag["name"] for tag in spec["tags"]}
    for method, path, operation in _operations(spec):
        assert len(operation["tags"]) == 1 and operation["tags"][0] in tags, (method, path)
        assert (ROOT / "handlers" / f"{operation['tags'][0]}.py").exists(), (method, path)


@pytest.mark.parametrize(
    ("operation_id", "function"),
    [
        ("listAgents", "list_agents"),
        ("getCostSummary", "get_cost_summary"),
        ("getRedocScript", "get_redoc_script"),
        ("login", "login"),
    ],
)
def test_camel_case_operation_id_names_a_snake_case_function(operation_id, function):
    assert snake_case(operation_id) == function


@pytest.mark.parametrize(
    ("operation_id", "tags"),
    [("handlers.agents.list_agents", ["agents"]), ("list_agents", ["agents"]), ("listAgents", [])],
)
def test_resolver_refuses_dotted_snake_case_or_untagged_operations(operation_id, tags):
    with pytest.raises(ResolverError):
        handler_name(operation_id, tags)


def test_every_secured_operation_declares_its_error_replies():
    spec = authored_spec()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict):
                continue
            if operation.get("security", spec.get("security")) != []:
                assert {"401", "429"} <= set(operation["responses"]), (method, path)
            if "requestBody" in operation:
                assert {"413", "415", "422"} <= set(operation["responses"]), (method, path)


def test_models_gen_is_not_stale(tmp_path):
    fresh = tmp_path / "api.py"
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    subprocess.run(
        [str(ROOT / "scripts" / "gen_models.sh"), str(fresh)],
        cwd=ROOT,
        check=True,
        env={**os.environ, "PATH": path},
    )
    committed = (ROOT / "models_gen" / "api.py").read_text()
    assert fresh.read_text() == committed, "models_gen/ is stale: run `make gen`"


@pytest.mark.inprocess  # reads the app's route table
def test_the_app_serves_only_routes_from_the_spec(client):
    # HTTP goes to Connexion, which routes only what openapi.yaml declares; the
    # outer app adds nothing but the WebSocket channels of asyncapi.yaml.
    outer = client.app
    assert all(isinstance(r, WebSocketRoute) for r in outer.routes)
    assert_problem(client.get("/api/v1/not-a-route"), 404, "not_found")
    assert_problem(client.get("/api/v1/agents/a%0Ab/x"), 404, "not_found")


def test_execution_stop_reason_references_stop_reason_and_allows_null():
    schemas = authored_spec()["components"]["schemas"]
    stop_reason = schemas["Execution"]["properties"]["stop_reason"]
    assert stop_reason["allOf"] == [{"$ref": "#/components/schemas/StopReason"}]
    assert stop_reason["nullable"] is True and "enum" not in stop_reason


def _resolved_links(spec: dict, operation: dict, status: str) -> dict[str, dict]:
    links = operation["responses"][status]["links"]
    return {
        name: spec["components"]["links"][link["$ref"].rsplit("/", 1)[-1]]
        if "$ref" in link
        else link
        for name, link in links.items()
    }


@pytest.mark.parametrize(
    ("path", "method", "status", "expression", "targets"),
    [
        (
            "/api/v1/agents",
            "post",
            "201",
            "$response.body#/id",
            {"getAgent", "updateAgent", "deleteAgent", "executeAgent"},
        ),
        (
            "/api/v1/agents/{agent_id}/execute",
            "post",
            "200",
            "$response.body#/execution_id",
            {
                "getExecution",
                "listExecutionEvents",
                "cancelExecution",
                "pauseExecution",
                "resumeExecution",
            },
        ),
    ],
)
def test_links_lead_from_created_ids_to_the_operations_that_use_them(
    path, method, status, expression, targets
):
    spec = authored_spec()
    by_id = {operation["operationId"]: (p, operation) for _, p, operation in _operations(spec)}
    links = _resolved_links(spec, spec["paths"][path][method], status)
    assert targets <= {link["operationId"] for link in links.values()}
    for link in links.values():
        target_path, _ = by_id[link["operationId"]]
        assert list(link["parameters"].values()) == [expression]
        assert all("{" + name + "}" in target_path for name in link["parameters"])
