"""The contract itself: valid, fully routed, and mirrored by models_gen/."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from openapi_spec_validator import validate
from starlette.routing import WebSocketRoute

from cadre.app import load_spec
from tests.conftest import assert_problem

ROOT = Path(__file__).resolve().parent.parent


def test_openapi_document_is_valid():
    validate(load_spec())


def test_every_operation_id_resolves_to_a_handler_function():
    spec = load_spec()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "operationId" not in operation:
                continue
            module_name, _, function = operation["operationId"].rpartition(".")
            assert module_name.startswith("handlers."), (method, path)
            assert callable(getattr(importlib.import_module(module_name), function)), (
                method,
                path,
            )


def test_handler_modules_are_named_after_spec_tags():
    spec = load_spec()
    tags = {tag["name"] for tag in spec["tags"]}
    for item in spec["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict) and "operationId" in operation:
                module = operation["operationId"].split(".")[1]
                assert module in tags | {"docs"}, operation["operationId"]
                assert module == "docs" or operation["tags"] == [module]


def test_every_secured_operation_declares_its_error_replies():
    spec = load_spec()
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
