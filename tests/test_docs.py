"""Swagger UI, ReDoc (offline) and the spec, all from the same openapi.yaml."""

from __future__ import annotations

import json
import re
from urllib.parse import urljoin

import pytest

from cadre.spec_docs import authored_spec


@pytest.mark.parametrize("path", ["/openapi.json", "/api/v1/openapi.json"])
def test_spec_paths_serve_the_authored_document_with_refs_intact(client, path):
    reply = client.get(path)  # no token: public
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    served = reply.json()
    assert served == authored_spec()
    agent_reply = served["paths"]["/api/v1/agents/{agent_id}"]["get"]["responses"]["200"]
    assert agent_reply["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Agent"
    }
    # $refs are served as written, not expanded (Connexion's expanded copy was 1.5x the size)
    authored = json.dumps(authored_spec(), separators=(",", ":"), ensure_ascii=False).encode()
    assert len(reply.content) <= len(authored) * 1.05


def test_served_document_names_a_server_that_resolves_against_its_own_url(client):
    servers = client.get("/openapi.json").json()["servers"]
    assert servers[0]["url"] == "/" and servers[0]["description"]
    # Swagger UI and client generators resolve a relative server URL against the document's
    # URL: both spec paths then send requests to this origin, under the paths as written.
    for spec_url in ("http://testserver/openapi.json", "http://testserver/api/v1/openapi.json"):
        assert urljoin(spec_url, servers[0]["url"]) == "http://testserver/"


def test_spec_paths_are_operations_of_the_spec_without_security():
    paths = authored_spec()["paths"]
    for path in ("/openapi.json", "/api/v1/openapi.json", "/redoc"):
        assert paths[path]["get"]["security"] == []
        assert paths[path]["get"]["tags"] == ["docs"]


def test_swagger_ui_is_served_at_docs_and_loads_the_authored_spec(client):
    reply = client.get("/docs/")
    assert reply.status_code == 200
    assert "swagger-ui" in reply.text.lower()
    assert re.search(r"url: *\"/openapi.json\"", reply.text), reply.text
    assert client.get("/openapi.yaml").status_code == 404  # Connexion's expanded copy is gone


def test_redoc_page_loads_its_script_locally(client):
    page = client.get("/redoc")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    sources = re.findall(r'src="([^"]+)"', page.text)
    assert sources == ["/redoc/redoc.standalone.js"]
    assert "http://" not in page.text and "https://" not in page.text
    script = client.get(sources[0])
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("application/javascript")
    assert len(script.content) > 100_000
