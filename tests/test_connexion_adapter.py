"""Cadre's Connexion stack: the shortcuts it takes reach what Connexion itself would."""

from __future__ import annotations

from cadre.app import load_spec
from cadre.connexion.app import _Routing
from tests.conftest import assert_problem


def routing_middleware(client) -> _Routing:
    client.get("/health")  # Connexion builds its middleware stack on the first request
    connexion_app = client.app.http
    while not hasattr(connexion_app, "middleware"):
        connexion_app = connexion_app.app
    return next(m for m in connexion_app.middleware.middleware_stack if isinstance(m, _Routing))


def test_every_parameterless_operation_is_found_without_the_router(client):
    spec = load_spec()
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
