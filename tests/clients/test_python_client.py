"""The Python client openapi-python-client generates from openapi.yaml, run against a live server.

The package is generated into a temporary directory (nothing generated is committed) and the flow
calls its operation modules (``sync_detailed``) with its models, checking every reply."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.clients.conftest import SPEC

PACKAGE = "cadre_client"
PASSWORD = "py-flow-pass-1"
TASK = "hello world"

pytestmark = pytest.mark.clients


def generate(directory: Path, spec: Path = SPEC) -> Path:
    """Generate the client package from ``spec`` into ``directory``."""
    config = directory / "openapi-python-client.yaml"
    # A session archive (application/gzip) is read as the bytes it is.
    config.write_text(
        f"package_name_override: {PACKAGE}\npost_hooks: []\n"
        "content_type_overrides:\n  application/gzip: application/octet-stream\n"
    )
    generator = Path(sys.executable).parent / "openapi-python-client"
    command = [str(generator), "generate", "--path", str(spec), "--meta", "none"]
    command += ["--config", str(config), "--output-path", str(directory / PACKAGE)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    # The one operation it cannot describe: the ReDoc script (application/javascript).
    output = run.stdout + run.stderr
    warnings = [line for line in output.splitlines() if line.startswith("WARNING")]
    assert warnings == ["WARNING parsing GET /redoc/redoc.standalone.js within docs."], output
    return directory


@contextlib.contextmanager
def importable(directory: Path) -> Iterator[None]:
    """Make the generated package importable for the block, then forget it."""
    sys.path.insert(0, str(directory))
    try:
        yield
    finally:
        sys.path.remove(str(directory))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def run_flow(base_url: str, username: str) -> str:
    """Register, log in both ways, create an agent, run it, read its events and costs."""
    with contextlib.ExitStack() as clients:
        return flow(clients, base_url, username)


def flow(clients: contextlib.ExitStack, base_url: str, username: str) -> str:
    from cadre_client import AuthenticatedClient, Client
    from cadre_client.api.agents import create_agent, list_agents
    from cadre_client.api.auth import create_token, get_me, login, register_user
    from cadre_client.api.costs import get_cost_summary, list_costs
    from cadre_client.api.executions import execute_agent, get_execution, list_execution_events
    from cadre_client.models import (
        Agent,
        AgentCreate,
        AgentList,
        CostList,
        CostSummary,
        EventList,
        ExecuteRequest,
        Execution,
        ExecutionCreated,
        ExecutionStatus,
        LoginRequest,
        Problem,
        ProviderName,
        RegisterRequest,
        TokenPair,
        TokenRequest,
        User,
    )

    anonymous = clients.enter_context(Client(base_url=base_url, raise_on_unexpected_status=True))

    registered = register_user.sync_detailed(
        client=anonymous,
        body=RegisterRequest(email=f"{username}@example.com", username=username, password=PASSWORD),
    )
    assert registered.status_code == 201, registered.content
    assert isinstance(registered.parsed, User)
    assert registered.parsed.username == username

    logged_in = login.sync_detailed(
        client=anonymous, body=LoginRequest(username=username, password=PASSWORD)
    )
    assert logged_in.status_code == 200, logged_in.content
    assert isinstance(logged_in.parsed, TokenPair)

    granted = create_token.sync_detailed(
        client=anonymous,
        body=TokenRequest(grant_type="password", username=username, password=PASSWORD),
    )
    assert granted.status_code == 200, granted.content
    assert isinstance(granted.parsed, TokenPair)
    assert granted.parsed.token_type == "bearer"
    assert granted.headers["cache-control"] == "no-store"

    refused = create_token.sync_detailed(
        client=anonymous,
        body=TokenRequest(grant_type="password", username=username, password="wrong-pass-1"),
    )
    assert refused.status_code == 400
    assert isinstance(refused.parsed, Problem)
    assert refused.parsed.error == "invalid_grant"

    client = clients.enter_context(
        AuthenticatedClient(
            base_url=base_url, token=granted.parsed.access_token, raise_on_unexpected_status=True
        )
    )
    me = get_me.sync_detailed(client=client)
    assert isinstance(me.parsed, User)
    assert me.parsed.id == registered.parsed.id

    created = create_agent.sync_detailed(
        client=client,
        body=AgentCreate(name="py-echo", instructions="Repeat the task.", tags=["flow"]),
    )
    assert created.status_code == 201, created.content
    agent = created.parsed
    assert isinstance(agent, Agent)
    assert agent.id.startswith("agent_")
    assert agent.provider == ProviderName.ECHO
    assert agent.tags == ["flow"]

    listed = list_agents.sync_detailed(client=client, tag="flow")
    assert isinstance(listed.parsed, AgentList)
    assert [a.id for a in listed.parsed.agents] == [agent.id]
    untagged = list_agents.sync_detailed(client=client, tag="other")
    assert isinstance(untagged.parsed, AgentList)
    assert untagged.parsed.total == 0

    started = execute_agent.sync_detailed(agent.name, client=client, body=ExecuteRequest(task=TASK))
    assert started.status_code == 200, started.content
    assert isinstance(started.parsed, ExecutionCreated)
    execution_id = started.parsed.execution_id
    assert execution_id.startswith("exec_")

    for _ in range(600):
        polled = get_execution.sync_detailed(execution_id, client=client)
        assert polled.status_code == 200, polled.content
        execution = polled.parsed
        assert isinstance(execution, Execution)
        if execution.status not in (ExecutionStatus.QUEUED, ExecutionStatus.RUNNING):
            break
        time.sleep(0.05)
    assert execution.status == ExecutionStatus.COMPLETED, execution.error
    assert execution.stop_reason == "completed"
    assert execution.agent_id == agent.id
    assert execution.result is not None
    assert execution.result["output"] == TASK
    assert execution.usage.completion_tokens == 2

    events = list_execution_events.sync_detailed(execution_id, client=client)
    assert events.status_code == 200, events.content
    assert isinstance(events.parsed, EventList)
    kinds = [event.type_.value for event in events.parsed.events]
    assert kinds == ["status", "status", "token", "token", "usage", "complete"]
    assert [event.seq for event in events.parsed.events] == [1, 2, 3, 4, 5, 6]
    assert "".join(e["content"] for e in events.parsed.events if e.type_ == "token") == TASK
    assert events.parsed.events[-1]["result"]["output"] == TASK

    costs = list_costs.sync_detailed(client=client, limit=10)
    assert costs.status_code == 200, costs.content
    assert isinstance(costs.parsed, CostList)
    assert [(c.execution_id, c.agent_id, c.provider) for c in costs.parsed.costs] == [
        (execution_id, agent.id, "echo")
    ]
    assert costs.parsed.costs[0].completion_tokens == 2
    assert costs.parsed.total_cost == 0

    summary = get_cost_summary.sync_detailed(client=client)
    assert summary.status_code == 200, summary.content
    assert isinstance(summary.parsed, CostSummary)
    assert summary.parsed.period == "day"
    assert summary.parsed.by_provider.to_dict() == {"echo": 0}
    return execution_id


def test_python_client_flow_against_a_live_server(tmp_path: Path, cadre_url: str):
    with importable(generate(tmp_path)):
        assert run_flow(cadre_url, "py_flow").startswith("exec_")


def test_the_flow_fails_when_the_contract_drifts_from_the_server(tmp_path: Path, cadre_url: str):
    spec = yaml.safe_load(SPEC.read_text())
    created = spec["components"]["schemas"]["ExecutionCreated"]
    created["properties"]["id"] = created["properties"].pop("execution_id")
    created["required"] = ["id" if name == "execution_id" else name for name in created["required"]]
    drifted = tmp_path / "drifted.yaml"
    drifted.write_text(yaml.safe_dump(spec, sort_keys=False))
    with importable(generate(tmp_path, drifted)), pytest.raises(KeyError, match="'id'"):
        run_flow(cadre_url, "py_drift")
