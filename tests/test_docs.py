"""Swagger UI, ReDoc (offline) and the spec, all from the same openapi.yaml."""

from __future__ import annotations

import re

from cadre.app import load_spec


def test_openapi_json_is_the_yaml_spec(client):
    served = client.get("/openapi.json").json()
    spec = load_spec()
    assert served["info"]["title"] == spec["info"]["title"]
    assert set(served["paths"]) == set(spec["paths"])


def test_swagger_ui_is_served_at_docs(client):
    reply = client.get("/docs/")
    assert reply.status_code == 200
    assert "swagger-ui" in reply.text.lower()


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
