"""The spec linters of `make lint`: Spectral with .spectral.yaml on openapi.yaml (the spec passes,
and each of Cadre's own rules catches the mistake it is there for), and the AsyncAPI CLI on
asyncapi.yaml."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "clients" / "typescript"
SPECTRAL = NODE_DIR / "node_modules" / ".bin" / "spectral"
ASYNCAPI = NODE_DIR / "node_modules" / ".bin" / "asyncapi"
NO_TELEMETRY = {"ASYNCAPI_METRICS_CONFIG_PATH": str(NODE_DIR / "asyncapi-analytics.json")}


def lint(spec: Path) -> list[tuple[str, str]]:
    """(rule, dotted path) of every finding, at any severity."""
    assert SPECTRAL.exists(), "`make install` runs npm ci in clients/typescript"
    command = [
        str(SPECTRAL),
        "lint",
        "--quiet",
        "--ruleset",
        str(ROOT / ".spectral.yaml"),
        "-f",
        "json",
    ]
    run = subprocess.run([*command, str(spec)], capture_output=True, text=True, timeout=120)
    return [(d["code"], ".".join(map(str, d["path"]))) for d in json.loads(run.stdout or "[]")]


def test_openapi_yaml_passes_the_ruleset():
    assert lint(ROOT / "openapi.yaml") == []


def test_each_project_rule_catches_its_mistake(tmp_path: Path):
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    paths = spec["paths"]
    paths["/api/v1/agents"]["get"]["operationId"] = "list_agents"
    del paths["/api/v1/agents"]["post"]["tags"]
    responses = paths["/api/v1/costs"]["get"]["responses"]
    for status in [s for s in responses if s.startswith("4")]:
        del responses[status]
    paths["/api/v1/tools"]["get"]["responses"]["401"] = {
        "description": "Not a problem document",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
    del paths["/api/v1/auth/me"]["get"]["security"]
    paths["/api/v1/executions"]["get"]["security"] = []
    broken = tmp_path / "openapi.yaml"
    broken.write_text(yaml.safe_dump(spec, sort_keys=False))
    found = set(lint(broken)) - set(lint(ROOT / "openapi.yaml"))
    assert sorted(found) == [
        ("cadre-4xx-is-problem-json", "paths./api/v1/tools.get.responses.401.content"),
        ("cadre-api-operation-has-4xx", "paths./api/v1/costs.get.responses"),
        ("cadre-api-operation-secured", "paths./api/v1/auth/me.get"),
        ("cadre-api-operation-secured", "paths./api/v1/executions.get.security"),
        ("cadre-operation-id-camel-case", "paths./api/v1/agents.get.operationId"),
        ("operation-tags", "paths./api/v1/agents.post"),
    ]


def validate_asyncapi(document: Path) -> subprocess.CompletedProcess[str]:
    assert ASYNCAPI.exists(), "`make install` runs npm ci in clients/typescript"
    return subprocess.run(
        [str(ASYNCAPI), "validate", "--fail-severity=error", str(document)],
        env={
            **os.environ,
            "ASYNCAPI_METRICS_CONFIG_PATH": str(NODE_DIR / "asyncapi-analytics.json"),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_asyncapi_yaml_has_no_error_and_shared_messages_would_be_one(tmp_path: Path):
    assert validate_asyncapi(ROOT / "asyncapi.yaml").returncode == 0
    # Both channels referencing the same message objects is what the follow_* copies avoid.
    document = yaml.safe_load((ROOT / "asyncapi.yaml").read_text())
    stream = document["channels"]["/api/v1/executions/{execution_id}/stream"]
    for operation in (stream["publish"], stream["subscribe"]):
        for ref in operation["message"]["oneOf"]:
            ref["$ref"] = ref["$ref"].replace("/follow_", "/")
    shared = tmp_path / "asyncapi.yaml"
    shared.write_text(yaml.safe_dump(document, sort_keys=False))
    run = validate_asyncapi(shared)
    assert run.returncode != 0
    assert "asyncapi2-message-messageId-uniqueness" in run.stdout + run.stderr
