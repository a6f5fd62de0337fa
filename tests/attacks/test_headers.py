"""Hardening 7: token replies are never cached; the docs pages load nothing from elsewhere."""

from __future__ import annotations

import base64
import hashlib
import re

import httpx

from tests.attacks.conftest import PASSWORD, Attacked


def login(server: Attacked, username: str) -> httpx.Response:
    server.token(username)  # registers
    return httpx.post(
        f"{server.url}/api/v1/auth/login", json={"username": username, "password": PASSWORD}
    )


def test_login_reply_is_not_cacheable(server):
    reply = login(server, "cached")
    assert reply.status_code == 200
    assert reply.headers["cache-control"] == "no-store"
    assert reply.headers["pragma"] == "no-cache"
    assert reply.headers["content-type"] == "application/json"


def test_oauth2_token_endpoint_reply_is_not_cacheable(server):
    server.token("former")
    reply = httpx.post(
        f"{server.url}/api/v1/auth/token",
        data={"grant_type": "password", "username": "former", "password": PASSWORD},
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["cache-control"] == "no-store"
    assert reply.headers["pragma"] == "no-cache"


def test_refresh_reply_is_not_cacheable(server):
    refresh = login(server, "refresher").json()["refresh_token"]
    reply = httpx.post(f"{server.url}/api/v1/auth/refresh", json={"refresh_token": refresh})
    assert reply.status_code == 200, reply.text
    assert reply.headers["cache-control"] == "no-store"


def test_a_refused_login_has_no_tokens_and_is_a_plain_problem(server):
    reply = httpx.post(
        f"{server.url}/api/v1/auth/login", json={"username": "nobody", "password": "x-1234567"}
    )
    assert reply.status_code == 401
    assert reply.headers["content-type"].startswith("application/problem+json")


def policy(reply: httpx.Response) -> dict[str, str]:
    header = reply.headers["content-security-policy"]
    return {d.split()[0]: d.partition(" ")[2] for d in (p.strip() for p in header.split(";"))}


def test_redoc_page_may_load_nothing_but_its_own_script_and_spec(server):
    reply = httpx.get(f"{server.url}/redoc")
    assert reply.status_code == 200
    directives = policy(reply)
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["img-src"] == "'self' data:"  # ReDoc's CDN logo is refused
    assert directives["connect-src"] == "'self'"
    assert directives["worker-src"] == "blob:"  # ReDoc's search worker
    assert "http" not in reply.headers["content-security-policy"]
    assert '<script src="/redoc/redoc.standalone.js">' in reply.text


def test_swagger_ui_page_allows_exactly_its_inline_script(server):
    reply = httpx.get(f"{server.url}/docs/")
    assert reply.status_code == 200
    directives = policy(reply)
    inline = re.findall(r"<script>(.*?)</script>", reply.text, flags=re.DOTALL)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert directives["script-src"] == f"'self' 'sha256-{digest}'"
    assert directives["default-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    for src in re.findall(r'(?:src|href)="([^"]+)"', reply.text):
        assert not src.startswith(("http:", "https:", "//")), src  # all served by Cadre


def test_api_replies_carry_no_page_policy(server):
    reply = httpx.get(f"{server.url}/health")
    assert "content-security-policy" not in reply.headers
