"""Cadre's Connexion adapter: every fast path is installed on a built app, and reaches
what Connexion itself would.

A Connexion upgrade that stops calling one of Cadre's parts would otherwise fall back
to Connexion's slow path with every behavioural test still passing.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema_rs
import pytest
from connexion.middleware.security import SecurityMiddleware

from cadre.app import DOCS_PATH
from cadre.connexion import CadreConnexionApp, check_connexion_version
from cadre.connexion.app import Operation, SwaggerUI
from cadre.connexion.binding import Binder
from cadre.connexion.jsonifier import _OrjsonModule
from cadre.connexion.routing import Routing
from cadre.connexion.security import OAuth2Handler
from cadre.connexion.validation import (
    BodyValidator,
    ParamsValidator,
    ValidationMiddleware,
    ValidationOperation,
)
from cadre.spec_docs import authored_spec
from tests.conftest import assert_problem

pytestmark = pytest.mark.inprocess  # these read the built app's internals


def connexion_app(client) -> CadreConnexionApp:
    client.get("/health")  # Connexion builds its middleware stack on the first request
    app = client.app.http
    while not hasattr(app, "middleware"):
        app = app.app
    return app


def middleware(client, cls):
    return next(m for m in connexion_app(client).middleware.middleware_stack if isinstance(m, cls))


def operations(routed_middleware) -> dict:
    (apis,) = routed_middleware.apis.values()
    return {op_id: op for api in apis for op_id, op in api.operations.items()}


def routing_middleware(client) -> Routing:
    return middleware(client, Routing)


class TestFastPathsAreInstalled:
    def test_routing_is_cadres_with_every_parameterless_path_in_the_table(self, client):
        routing = routing_middleware(client)
        assert type(routing) is Routing
        assert ("GET", "/api/v1/agents") in routing.static
        assert ("POST", "/api/v1/agents") in routing.static

    def test_request_validation_builds_cadres_operations_with_their_validators(self, client):
        validation = middleware(client, ValidationMiddleware)
        ops = operations(validation)
        assert ops and all(type(op) is ValidationOperation for op in ops.values())
        create = ops["createAgent"]
        assert isinstance(create._parameters, ParamsValidator)
        body = create._body_validator("application/json", "utf-8")
        assert type(body) is BodyValidator
        assert isinstance(body._compiled.fast, jsonschema_rs.Draft4Validator)
        assert create._body_validator("application/json", "utf-8") is body  # built once

    def test_handlers_are_called_through_a_binder_with_the_apps_services(self, client):
        ops = operations(connexion_app(client)._middleware_app)
        assert ops and all(type(op) is Operation for op in ops.values())
        assert all(isinstance(op.binder, Binder) for op in ops.values())
        services = client.app.state.services
        execute = ops["executeAgent"].binder
        assert execute.services == {"executor": services.executor, "db": services.db}
        # plain ``def`` handlers (database work) are called through the app's DatabaseCalls
        listing = ops["listAgents"].binder
        assert not listing.is_async and listing.sync_calls is services.db
        assert execute.is_async
        assert execute.headers == {b"idempotency-key": "idempotency_key"}
        events = ops["listExecutionEvents"].binder
        assert events.headers == {b"last-event-id": "last_event_id"}
        assert events.wants_accept

    def test_the_oauth2_check_is_cadres_on_the_apps_token_service(self, client):
        security = operations(middleware(client, SecurityMiddleware))
        factory = security["listAgents"].security_handler_factory
        handler = factory.security_handlers["oauth2"]()
        assert type(handler) is OAuth2Handler
        assert handler.tokens is client.app.state.services.tokens

    def test_replies_are_encoded_by_orjson(self, client):
        ops = operations(connexion_app(client)._middleware_app)
        jsonifier = ops["listAgents"].binder.responses.jsonifier
        assert jsonifier.json is _OrjsonModule

    def test_swagger_ui_is_consulted_only_for_its_own_paths(self, client):
        swagger = middleware(client, SwaggerUI)
        assert swagger.prefixes == (DOCS_PATH,)  # the spec itself is an operation (getOpenapi)
        assert client.get(DOCS_PATH + "/").status_code == 200


class TestVersionGuard:
    @pytest.mark.parametrize("version", ["3.3.0", "3.3.12"])
    def test_connexion_3_3_is_accepted(self, version: str):
        check_connexion_version(version)

    @pytest.mark.parametrize("version", ["3.4.0", "3.2.1", "4.0.0", "2.14.2", "unknown"])
    def test_any_other_connexion_refuses_to_import_naming_the_supported_range(self, version: str):
        with pytest.raises(ImportError, match=r"connexion>=3\.3,<3\.4.*" + version):
            check_connexion_version(version)


def test_every_parameterless_operation_is_found_without_the_router(client):
    spec = authored_spec()
    expected = {
        (method.upper(), path): operation["operationId"]
        for path, item in spec["paths"].items()
        if "{" not in path
        for method, operation in item.items()
        if isinstance(operation, dict) and "operationId" in operation
    }
    table = {
        key: routing["operation_id"] for key, routing in routing_middleware(client).static.items()
    }
    assert table == expected


def test_static_lookup_and_router_agree_on_what_a_request_reaches(client, alice):
    # Through the table: the list and the create.
    assert client.get("/api/v1/agents", headers=alice.headers).status_code == 200
    created = client.post("/api/v1/agents", json={"name": "a1"}, headers=alice.headers)
    assert created.status_code == 201
    # Through the router: a path with a parameter, and a method the path lacks (405).
    assert client.get("/api/v1/agents/a1", headers=alice.headers).json()["name"] == "a1"
    refused = client.put("/api/v1/agents", json={}, headers=alice.headers)
    assert_problem(refused, 405, "method_not_allowed")
    assert "POST" in refused.headers["allow"]


def test_query_defaults_and_types_reach_the_handler(client, alice):
    for i in range(3):
        client.post("/api/v1/agents", json={"name": f"n{i}"}, headers=alice.headers)
    page = client.get("/api/v1/agents", headers=alice.headers).json()
    assert (page["limit"], page["offset"], page["total"]) == (100, 0, 3)
    page = client.get("/api/v1/agents?limit=2&offset=1", headers=alice.headers).json()
    assert (page["limit"], page["offset"], len(page["agents"])) == (2, 1, 2)


def test_a_json_body_without_a_content_type_is_read_as_the_validated_json(client, alice):
    reply = client.post("/api/v1/agents", content=b'{"name": "bare"}', headers=alice.headers)
    assert reply.status_code == 201, reply.text
    assert reply.json()["name"] == "bare"


class TestNoGlobals:
    def test_each_app_injects_its_own_services(self, make_client):
        first, second = make_client(), make_client()
        for client in (first, second):
            ops = operations(connexion_app(client)._middleware_app)
            binder = ops["cancelExecution"].binder
            assert binder.services["executor"] is client.app.state.services.executor
        assert first.app.state.services.executor is not second.app.state.services.executor

    def test_no_handler_reads_a_global_request_or_runtime(self):
        handlers = Path(__file__).resolve().parent.parent / "handlers"
        for module in handlers.glob("*.py"):
            source = module.read_text()
            assert "connexion import request" not in source, module.name
            assert "connexion.request" not in source, module.name
            assert "runtime" not in source, module.name
