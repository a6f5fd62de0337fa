"""One error shape for every failure, request ids and security headers on every reply."""

from __future__ import annotations

import pytest

from tests.conftest import Account, assert_problem


class TestProblemShape:
    def test_validation_error_names_every_bad_field(self, client, alice: Account):
        reply = client.post(
            "/api/v1/agents",
            json={"name": "has space", "temperature": 9, "colour": "red"},
            headers=alice.headers,
        )
        body = assert_problem(reply, 422, "validation_error")
        assert set(body["details"]) == {"body.name", "body.temperature", "body.colour"}
        assert body["type"].endswith("/validation_error")
        assert body["title"] == "Unprocessable Entity"

    def test_unknown_query_parameter_is_rejected_by_name(self, client, alice: Account):
        reply = client.get("/api/v1/agents?colour=red&limit=x", headers=alice.headers)
        body = assert_problem(reply, 422, "validation_error")
        assert set(body["details"]) == {"query.colour", "query.limit"}

    def test_malformed_json_is_400(self, client, alice: Account):
        reply = client.post(
            "/api/v1/agents",
            content=b'{"name": ',
            headers={**alice.headers, "Content-Type": "application/json"},
        )
        assert_problem(reply, 400, "invalid_json")

    @pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
    def test_non_finite_json_numbers_are_400(self, client, alice: Account, literal: bytes):
        reply = client.post(
            "/api/v1/agents",
            content=b'{"name": "a", "temperature": ' + literal + b"}",
            headers={**alice.headers, "Content-Type": "application/json"},
        )
        assert_problem(reply, 400, "invalid_json")

    def test_huge_exponent_is_rejected_not_stored_as_infinity(self, client, alice: Account):
        reply = client.post(
            "/api/v1/agents",
            content=b'{"name": "a", "temperature": 1e400}',
            headers={**alice.headers, "Content-Type": "application/json"},
        )
        assert "infinity" in assert_problem(reply, 400, "invalid_json")["message"]

    def test_non_utf8_body_is_400(self, client, alice: Account):
        reply = client.post(
            "/api/v1/agents",
            content=b'{"name": "\xff\xfe"}',
            headers={**alice.headers, "Content-Type": "application/json"},
        )
        assert_problem(reply, 400, "invalid_encoding")

    def test_unsupported_content_type_is_415(self, client, alice: Account):
        reply = client.post(
            "/api/v1/agents",
            content=b"name=a",
            headers={**alice.headers, "Content-Type": "text/csv"},
        )
        assert_problem(reply, 415, "unsupported_media_type")

    def test_missing_required_body_is_400(self, client, alice: Account):
        reply = client.post("/api/v1/agents", headers=alice.headers)
        assert_problem(reply, 400, "missing_body")

    def test_unknown_route_is_404_problem(self, client):
        assert_problem(client.get("/api/v1/nothing-here"), 404, "not_found")

    def test_wrong_method_is_405_with_every_allowed_method(self, client, alice: Account):
        reply = client.put("/api/v1/agents/some-agent", headers=alice.headers)
        assert_problem(reply, 405, "method_not_allowed")
        assert reply.headers["allow"] == "DELETE, GET, PATCH"

    def test_unexpected_failure_is_500_problem_without_internals(
        self, client, alice: Account, monkeypatch
    ):
        from storage import agents

        def explode(*_args, **_kwargs):
            raise RuntimeError("secret internal detail")

        monkeypatch.setattr(agents, "list_agents", explode)
        reply = client.get("/api/v1/agents", headers=alice.headers)
        body = assert_problem(reply, 500, "internal_error")
        assert "secret internal detail" not in reply.text
        assert "Traceback" not in reply.text
        assert body["details"] == {}


class TestBodyLimit:
    def test_body_over_limit_is_413_before_parsing(self, make_client):
        client = make_client(max_body_bytes=2048)
        reply = client.post(
            "/api/v1/auth/register",
            content=b'{"email": "' + b"a" * 4096 + b'"}',
            headers={"Content-Type": "application/json"},
        )
        assert_problem(reply, 413, "payload_too_large")

    def test_chunked_body_over_limit_is_413(self, make_client):
        client = make_client(max_body_bytes=2048)

        def chunks():
            for _ in range(8):
                yield b"x" * 1024

        reply = client.post(
            "/api/v1/auth/register",
            content=chunks(),
            headers={"Content-Type": "application/json"},
        )
        assert_problem(reply, 413, "payload_too_large")

    def test_default_limit_is_one_mebibyte(self, client, alice: Account):
        big = {"name": "big", "instructions": "x" * (1024 * 1024)}
        reply = client.post("/api/v1/agents", json=big, headers=alice.headers)
        assert_problem(reply, 413, "payload_too_large")


class TestHeaders:
    def test_request_id_is_generated_when_absent(self, client):
        reply = client.get("/health")
        assert reply.headers["x-request-id"].startswith("req_")

    def test_sane_request_id_is_echoed(self, client):
        reply = client.get("/health", headers={"X-Request-ID": "trace-123.abc"})
        assert reply.headers["x-request-id"] == "trace-123.abc"

    def test_insane_request_id_is_replaced(self, client):
        reply = client.get("/health", headers={"X-Request-ID": "x" * 500})
        assert reply.headers["x-request-id"].startswith("req_")

    def test_error_body_carries_the_same_request_id(self, client):
        reply = client.get("/api/v1/agents", headers={"X-Request-ID": "abc-1"})
        assert assert_problem(reply, 401)["request_id"] == "abc-1"

    @pytest.mark.parametrize("path", ["/health", "/api/v1/agents", "/nowhere", "/openapi.json"])
    def test_security_headers_on_every_reply(self, client, path: str):
        reply = client.get(path)
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert reply.headers["x-frame-options"] == "DENY"

    def test_cors_allows_configured_origin_only(self, make_client):
        client = make_client(cors_origins="https://app.example.com")
        allowed = client.get("/health", headers={"Origin": "https://app.example.com"})
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        other = client.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        preflight = client.options(
            "/api/v1/agents",
            headers={
                "Origin": "https://app.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "Authorization, Content-Type",
            },
        )
        assert preflight.status_code == 200
        assert "POST" in preflight.headers["access-control-allow-methods"]


class TestNoContent:
    def test_204_replies_have_no_body_and_no_content_type(self, client, alice: Account):
        client.post("/api/v1/agents", json={"name": "gone"}, headers=alice.headers)
        reply = client.delete("/api/v1/agents/gone", headers=alice.headers)
        assert reply.status_code == 204
        assert reply.content == b""
        assert "content-type" not in reply.headers


class TestFormBodies:
    def test_token_form_errors_are_422_naming_each_field(self, client):
        reply = client.post(
            "/api/v1/auth/token", data={"username": "johndoe", "grant_type": "x" * 65}
        )
        body = assert_problem(reply, 422, "validation_error")
        assert set(body["details"]) == {"body.password", "body.grant_type"}
