"""Clients for a live ``cadre serve``: what the suite talks to when ``CADRE_TEST_LIVE=1``.

The in-process ``TestClient`` skips uvicorn, its ASGI scope and its WebSocket
protocol; a bug that lives there (every metric labelled ``unmatched``, say) passes
every in-process test. With ``CADRE_TEST_LIVE=1`` each test's app is a real server
on a loopback port, reached over HTTP by httpx and over WebSockets by the
``websockets`` client, behind the slice of ``TestClient``'s interface the tests use.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from starlette.websockets import WebSocketDisconnect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from cadre.settings import Settings
from scripts.live_server import Server, live_server


def settings_environment(settings: Settings) -> dict[str, str]:
    """The settings a test chose, as the ``CADRE_*`` variables ``cadre serve`` reads."""
    environment: dict[str, str] = {}
    for name in settings.model_fields_set:
        value = getattr(settings, name)
        if value is None:
            continue
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        environment[f"CADRE_{name.upper()}"] = text
    return environment


class LiveWebSocket:
    """``TestClient``'s WebSocket session over a real connection; a close is a disconnect."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    def send_text(self, data: str) -> None:
        self.connection.send(data)

    def send_bytes(self, data: bytes) -> None:
        self.connection.send(data)

    def send_json(self, data: Any) -> None:
        self.connection.send(json.dumps(data))

    def receive_text(self) -> str:
        try:
            message = self.connection.recv(timeout=30)
        except ConnectionClosed as exc:
            received = exc.rcvd
            raise WebSocketDisconnect(
                code=received.code if received else 1006,
                reason=received.reason if received else "",
            ) from exc
        return message if isinstance(message, str) else message.decode()

    def receive_json(self) -> Any:
        return json.loads(self.receive_text())

    def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.connection.close(code, reason or "")


class LiveClient(httpx.Client):
    """An httpx client on a live server, with ``websocket_connect`` as ``TestClient`` has it."""

    def __init__(self, server: Server) -> None:
        super().__init__(base_url=server.url, timeout=30)
        self.server = server

    @contextlib.contextmanager
    def websocket_connect(
        self, path: str, headers: dict[str, str] | None = None, **_: Any
    ) -> Iterator[LiveWebSocket]:
        url = "ws" + self.server.url.removeprefix("http") + path
        try:
            connection = connect(url, additional_headers=headers, open_timeout=10)
        except InvalidStatus as exc:  # closed before the handshake completed
            raise WebSocketDisconnect(code=1008, reason=str(exc)) from exc
        with connection:
            yield LiveWebSocket(connection)


@contextlib.contextmanager
def live_client(settings: Settings) -> Iterator[LiveClient]:
    """A ``cadre serve`` process configured by ``settings``, and a client for it."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with (
        live_server(settings.data_dir, **settings_environment(settings)) as server,
        LiveClient(server) as client,
    ):
        yield client
    assert_no_traceback(server.log_path)  # after shutdown, which may fail too


def assert_no_traceback(log_path: Path) -> None:
    """A live server's log shows no exception: a crash a reply hid would still be a bug."""
    log = log_path.read_text(errors="replace")
    if "Traceback (most recent call last)" in log:
        start = log.index("Traceback (most recent call last)")
        raise AssertionError(f"the server logged an exception ({log_path}):\n{log[start:][:4000]}")
