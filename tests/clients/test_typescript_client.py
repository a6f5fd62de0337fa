"""The TypeScript client: types generated from openapi.yaml by openapi-typescript, calls made with
openapi-fetch. The flow in clients/typescript/src/flow.ts must typecheck (tsc, strict) against the
generated types and then run, asserting every reply, against a live server."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.clients.conftest import ROOT, SPEC

PACKAGE = ROOT / "clients" / "typescript"
NODE_MODULES = PACKAGE / "node_modules"

pytestmark = pytest.mark.clients


def run(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


def tool(name: str) -> str:
    return str(NODE_MODULES / ".bin" / name)


def client_project(directory: Path, spec: Path) -> Path:
    """A copy of the client project whose generated/schema.d.ts comes from ``spec``."""
    assert (NODE_MODULES / "openapi-fetch").is_dir(), "`make install` runs npm ci there"
    directory.mkdir()
    shutil.copytree(PACKAGE / "src", directory / "src")
    for name in ("package.json", "tsconfig.json"):
        shutil.copy(PACKAGE / name, directory)
    (directory / "node_modules").symlink_to(NODE_MODULES)
    schema = "generated/schema.d.ts"
    generated = run([tool("openapi-typescript"), str(spec), "-o", schema], directory)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert "export interface paths" in (directory / schema).read_text()
    return directory


def typecheck(project: Path) -> subprocess.CompletedProcess[str]:
    return run([tool("tsc"), "--noEmit", "-p", "tsconfig.json"], project)


def test_typescript_flow_typechecks_and_runs_against_a_live_server(tmp_path: Path, cadre_url):
    project = client_project(tmp_path / "ts", SPEC)
    checked = typecheck(project)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    flow = run([tool("tsx"), "src/flow.ts"], project, CADRE_URL=cadre_url)
    assert flow.returncode == 0, flow.stdout + flow.stderr
    assert "typescript client flow ok: exec_" in flow.stdout
    assert flow.stdout.rstrip().endswith("status,status,token,token,usage,complete")


def test_the_typecheck_fails_when_the_contract_drops_what_the_flow_uses(tmp_path: Path):
    spec = yaml.safe_load(SPEC.read_text())
    created = spec["components"]["schemas"]["ExecutionCreated"]
    created["properties"]["id"] = created["properties"].pop("execution_id")
    created["required"] = ["id" if name == "execution_id" else name for name in created["required"]]
    drifted = tmp_path / "drifted.yaml"
    drifted.write_text(yaml.safe_dump(spec, sort_keys=False))
    checked = typecheck(client_project(tmp_path / "ts", drifted))
    assert checked.returncode != 0
    errors = [line for line in checked.stdout.splitlines() if "error TS" in line]
    assert errors, checked.stdout
    assert all("src/flow.ts" in line and "'execution_id'" in line for line in errors), errors
