"""GET and POST /api/v1/agents with no framework at all: the floor for this work.

A bare ASGI callable: PyJWT checks the bearer token (same key, algorithm, issuer,
audience), the sqlite3 module reads and writes the same tables Cadre's migrations
made, orjson encodes the same reply shapes (agents without parents, as the bench
seeds them, so there is nothing to inherit). No validation layer, no ORM, no
pydantic: what Cadre's layers cost is measured against this.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import jwt
import orjson
from ulid import ULID

from cadre.settings import Settings
from scripts.bench_apps import READ_SCOPE, WRITE_SCOPE, setup

DEFAULTS = {"provider": "echo", "model": "echo", "temperature": 0.7, "instructions": ""}
NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,64}$")
COLUMNS = (
    "id, name, provider, model, temperature, instructions, tools, tags, parent_id, status, "
    "owner_id, created_at, updated_at"
)
INSERT = f"INSERT INTO agent ({COLUMNS}) VALUES ({', '.join('?' * 13)})"
JSON = [(b"content-type", b"application/json")]


def _stamp(value: str) -> str:
    return value.replace(" ", "T") + "Z"


def _agent(row: tuple[Any, ...]) -> dict[str, Any]:
    (id_, name, provider, model, temp, instructions, tools, tags, parent_id, status, owner,
     created, updated) = row  # fmt: skip
    return {
        "id": id_,
        "name": name,
        "provider": provider or DEFAULTS["provider"],
        "model": model or DEFAULTS["model"],
        "temperature": DEFAULTS["temperature"] if temp is None else temp,
        "instructions": instructions or DEFAULTS["instructions"],
        "tools": orjson.loads(tools) if tools else [],
        "tags": orjson.loads(tags),
        "parent": None,
        "parent_id": parent_id,
        "status": status,
        "inherited": [],
        "owner_id": owner,
        "created_at": _stamp(created),
        "updated_at": _stamp(updated),
    }


def create_app():
    setup()  # the same database file, migrated
    settings = Settings()
    key, algorithm = settings.signing_key(), settings.jwt_algorithm
    path = settings.effective_database_url.removeprefix("sqlite:///")
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA journal_mode=wal")
    connection.execute("PRAGMA synchronous=normal")

    async def send_json(send, status: int, body: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": JSON})
        await send({"type": "http.response.body", "body": orjson.dumps(body)})

    def claims_for(scope: dict[str, Any], needed: str) -> dict[str, Any] | None:
        for name, value in scope["headers"]:
            if name == b"authorization":
                token = value.decode().partition(" ")[2]
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[algorithm],
                    audience=settings.jwt_audience,
                    issuer=settings.jwt_issuer,
                )
                return claims if needed in claims["scopes"] else None
        return None

    def list_page(owner: str, limit: int, offset: int) -> dict[str, Any]:
        rows = connection.execute(
            f"SELECT {COLUMNS} FROM agent WHERE owner_id = ? "
            "ORDER BY created_at, id LIMIT ? OFFSET ?",
            (owner, limit + 1, offset),
        ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        if more or (not rows and offset):
            found = connection.execute(
                "SELECT n FROM row_count WHERE owner_id = ? AND kind = 'agent'", (owner,)
            ).fetchone()
            total = found[0] if found else 0
        else:
            total = offset + len(rows)
        agents = [_agent(row) for row in rows]
        return {"agents": agents, "total": total, "limit": limit, "offset": offset, "next": None}

    def create(owner: str, body: dict[str, Any]) -> dict[str, Any]:
        now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
        values = (
            f"agent_{ULID()}", body["name"], body.get("provider"), body.get("model"),
            body.get("temperature"), body.get("instructions"), None, "[]", None, "active",
            owner, now, now,
        )  # fmt: skip
        with connection:
            connection.execute("BEGIN")
            connection.execute(
                f"INSERT INTO agent ({COLUMNS}) VALUES ({','.join('?' * 13)})", values
            )
            connection.execute(
                "INSERT INTO row_count (owner_id, kind, n, amount) VALUES (?, 'agent', 1, 0) "
                "ON CONFLICT (owner_id, kind) DO UPDATE SET n = n + 1",
                (owner,),
            )
        return _agent(values)

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["method"] == "GET":
            claims = claims_for(scope, READ_SCOPE)
            if claims is None:
                return await send_json(send, 401, {"error": "unauthorized"})
            query = dict(parse_qsl(scope["query_string"].decode()))
            limit, offset = int(query.get("limit", 100)), int(query.get("offset", 0))
            return await send_json(send, 200, list_page(claims["sub"], limit, offset))
        claims = claims_for(scope, WRITE_SCOPE)
        if claims is None:
            return await send_json(send, 401, {"error": "unauthorized"})
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        body = orjson.loads(raw)
        if not isinstance(body, dict) or not NAME.match(str(body.get("name", ""))):
            return await send_json(send, 422, {"error": "validation_error"})
        try:
            return await send_json(send, 201, create(claims["sub"], body))
        except sqlite3.IntegrityError:
            return await send_json(send, 409, {"error": "name_taken"})

    return app
