"""Hardening 3: an admin who narrowed their login's scopes must not read everyone's data."""

from __future__ import annotations

import httpx
import pytest

from tests.attacks.conftest import Attacked, assert_refused

EVERYONE = ["/api/v1/agents?all=true", "/api/v1/costs?all=true", "/api/v1/costs/summary?all=true"]


@pytest.fixture(scope="module")
def admin(server: Attacked) -> str:
    server.create_admin("root")
    return "root"


def bearer(reply: httpx.Response) -> dict[str, str]:
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


@pytest.mark.parametrize("path", EVERYONE)
def test_admin_token_narrowed_at_login_cannot_read_every_users_data(server, admin, path):
    narrowed = bearer(server.login(admin, scopes=["agents:read", "costs:read"]))
    problem = assert_refused(httpx.get(f"{server.url}{path}", headers=narrowed), 403)
    assert problem["error"] == "insufficient_scope"
    assert "'admin' scope" in problem["message"]


@pytest.mark.parametrize("path", EVERYONE)
def test_narrowed_admin_token_still_reads_its_own_data(server, admin, path):
    narrowed = bearer(server.login(admin, scopes=["agents:read", "costs:read"]))
    own = path.replace("?all=true", "")
    assert httpx.get(f"{server.url}{own}", headers=narrowed).status_code == 200


@pytest.mark.parametrize("path", EVERYONE)
def test_admin_token_with_the_admin_scope_reads_every_users_data(server, admin, path):
    full = bearer(server.login(admin))
    assert httpx.get(f"{server.url}{path}", headers=full).status_code == 200


def test_user_asking_for_everyones_data_is_admin_required(server):
    reply = httpx.get(f"{server.url}/api/v1/agents?all=true", headers=server.headers())
    assert_refused(reply, 403, "admin_required")
