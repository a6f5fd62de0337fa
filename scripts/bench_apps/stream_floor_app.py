"""A streamed execution with no framework at all: the floor for Cadre's WebSocket streams.

A bare ASGI callable serving ``/api/v1/agents/{agent}/stream``: PyJWT checks the
``?token=`` (same key, algorithm, issuer, audience, scope), the task message is read,
and the echo provider's words go out as the same ``token`` and ``complete`` events
(type, execution_id, seq, timestamp, content), each encoded once with orjson and
stored with the sqlite3 module in batches written every 10 ms, as Cadre's bus does.
No validation, no ORM, no executor: what Cadre's layers cost per token is measured
against this (``scripts/bench_streams.py``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import jwt
import orjson
from ulid import ULID

from cadre.settings import Settings
from scripts.bench_apps import setup

SCOPE = "executions:write"
FLUSH_SECONDS = 0.01
TABLE = (
    "CREATE TABLE IF NOT EXISTS floor_event "
    "(execution_id TEXT, seq INTEGER, type TEXT, data TEXT, created_at TEXT)"
)
INSERT = "INSERT INTO floor_event VALUES (?, ?, ?, ?, ?)"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def create_app():
    setup()  # the same database file, migrated
    settings = Settings()
    key, algorithm = settings.signing_key(), settings.jwt_algorithm
    path = settings.effective_database_url.removeprefix("sqlite:///")
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA journal_mode=wal")
    connection.execute("PRAGMA synchronous=normal")
    connection.execute(TABLE)
    pending: list[tuple[str, int, str, bytes, str]] = []
    flushing: list[asyncio.TimerHandle] = []

    def flush() -> None:
        flushing.clear()
        rows = pending[:]
        pending.clear()
        with connection:
            connection.execute("BEGIN")
            connection.executemany(INSERT, rows)

    def store(execution_id: str, seq: int, kind: str, data: bytes, stamp: str) -> None:
        pending.append((execution_id, seq, kind, data, stamp))
        if not flushing:
            flushing.append(asyncio.get_running_loop().call_later(FLUSH_SECONDS, flush))

    def claims_for(scope: dict[str, Any]) -> dict[str, Any] | None:
        token = dict(parse_qsl(scope["query_string"].decode())).get("token", "")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
            )
        except jwt.PyJWTError:
            return None
        return claims if SCOPE in claims["scopes"] else None

    async def stream(scope, receive, send) -> None:
        await receive()  # websocket.connect
        if claims_for(scope) is None:
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "websocket.accept"})
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        body = orjson.loads(message.get("text") or message.get("bytes") or b"{}")
        echo = (body.get("inputs") or {}).get("echo") or {}
        words = body["task"].split()
        count, delay = int(echo.get("tokens", len(words))), echo.get("delay_ms", 0) / 1000
        execution_id = f"exec_{ULID()}"
        for seq in range(1, count + 1):
            await asyncio.sleep(delay)
            word = words[(seq - 1) % len(words)]
            stamp = _now()
            event = {
                "type": "token",
                "execution_id": execution_id,
                "seq": seq,
                "timestamp": stamp,
                "content": word if seq == 1 else f" {word}",
            }
            data = orjson.dumps(event)
            store(execution_id, seq, "token", data, stamp)
            await send({"type": "websocket.send", "text": data.decode()})
        stamp = _now()
        done = {
            "type": "complete",
            "execution_id": execution_id,
            "seq": count + 1,
            "timestamp": stamp,
            "status": "completed",
        }
        data = orjson.dumps(done)
        store(execution_id, count + 1, "complete", data, stamp)
        await send({"type": "websocket.send", "text": data.decode()})
        await send({"type": "websocket.close", "code": 1000})

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] == "websocket":
            await stream(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app
