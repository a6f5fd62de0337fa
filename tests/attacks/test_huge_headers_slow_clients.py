"""Hardening: huge request heads, heads trickled in, silent WebSockets, too many connections.

Raw sockets on 127.0.0.1 against a real ``cadre serve``; every loop is bounded and
every wait polls for a state until a deadline.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.asyncapi_check import check_server_message
from tests.attacks.conftest import Attacked, serve

MIB = 1024 * 1024
HEAD_TIMEOUT = 2  # CADRE_REQUEST_HEADER_TIMEOUT_SECONDS for this module's server
AUTH_TIMEOUT = 1  # CADRE_WEBSOCKET_AUTH_TIMEOUT_SECONDS
HEAD = b"GET /api/v1/agents HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: "


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attacked]:
    with serve(
        tmp_path_factory.mktemp("heads"),
        CADRE_REQUEST_HEADER_TIMEOUT_SECONDS=str(HEAD_TIMEOUT),
        CADRE_WEBSOCKET_AUTH_TIMEOUT_SECONDS=str(AUTH_TIMEOUT),
    ) as attacked:
        yield attacked


def address(server: Attacked) -> tuple[str, int]:
    return "127.0.0.1", int(server.url.rsplit(":", 1)[1])


def read_until_closed(sock: socket.socket, deadline: float) -> bytes:
    """Everything the server sends until it closes (or resets) the connection."""
    chunks = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    else:
        raise AssertionError("the server kept the connection open")
    return b"".join(chunks)


def send_huge_head(sock: socket.socket, size: int) -> bool:
    """Send ``size`` bytes of one header value; True if the server answered before the end."""
    sock.sendall(HEAD)
    chunk = b"a" * 65536
    for _ in range(size // len(chunk)):
        if select.select([sock], [], [], 0)[0]:
            return True
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            return True
    return bool(select.select([sock], [], [], 5)[0])


def status_and_body(reply: bytes) -> tuple[int, dict]:
    head, _, body = reply.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/problem+json" in head.lower(), head
    return status, json.loads(body)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_an_8_mib_header_gets_431_without_a_token(server):
    with socket.create_connection(address(server), timeout=10) as sock:
        assert send_huge_head(sock, 8 * MIB), "no reply before the whole header was sent"
        reply = read_until_closed(sock, time.monotonic() + 10)
    status, problem = status_and_body(reply)
    assert status == 431
    assert problem["error"] == "headers_too_large" and problem["request_id"]
    assert httpx.get(f"{server.url}/health").status_code == 200  # the server is fine


def test_a_head_just_under_the_limit_is_served(server):
    reply = httpx.get(f"{server.url}/health", headers={"X-Padding": "a" * 12_000})
    assert reply.status_code == 200


def test_twenty_unfinished_large_heads_leave_memory_bounded(server):
    pid = server.process.pid
    before = rss_kib(pid)
    sockets = [socket.create_connection(address(server), timeout=10) for _ in range(20)]
    try:
        for sock in sockets:  # 8 MiB each, never finished with a blank line
            send_huge_head(sock, 8 * MIB)
        grown = (rss_kib(pid) - before) / 1024
        assert grown < 64, f"RSS grew by {grown:.0f} MiB"
    finally:
        for sock in sockets:
            sock.close()
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_a_trickled_head_is_cut_off_after_the_timeout(server):
    with socket.create_connection(address(server), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        deadline = time.monotonic() + HEAD_TIMEOUT + 10
        reply = b""
        while time.monotonic() < deadline:  # one header byte every 0.2 s, forever
            if select.select([sock], [], [], 0.2)[0]:
                reply = read_until_closed(sock, deadline)
                break
            try:
                sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                break
        else:
            raise AssertionError("the trickling client was never disconnected")
    status, problem = status_and_body(reply)
    assert status == 408 and problem["error"] == "request_timeout"


def test_a_connection_that_sends_nothing_is_closed(server):
    with socket.create_connection(address(server), timeout=10) as sock:
        assert read_until_closed(sock, time.monotonic() + HEAD_TIMEOUT + 10) == b""


def test_an_unauthenticated_websocket_is_closed_with_1008(server):
    url = server.url.replace("http://", "ws://") + "/api/v1/agents/any/stream"
    with connect(url, open_timeout=10) as ws:
        message = check_server_message(json.loads(ws.recv(timeout=AUTH_TIMEOUT + 10)))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert message["type"] == "protocol_error" and message["error"] == "not_authenticated"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert "Authenticate within" in closed.value.rcvd.reason


def test_many_silent_websockets_are_all_closed(server):
    url = server.url.replace("http://", "ws://") + "/api/v1/executions/any/stream"
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(connect(url, open_timeout=10)) for _ in range(30)]
        for ws in sockets:
            ws.recv(timeout=AUTH_TIMEOUT + 10)  # the protocol_error
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)


def test_connections_beyond_the_limit_get_503_and_streams_still_work(start_server):
    with start_server(CADRE_MAX_CONNECTIONS="4") as server:
        headers = server.headers()
        token = headers["Authorization"].removeprefix("Bearer ")
        agent = httpx.post(f"{server.url}/api/v1/agents", json={"name": "a"}, headers=headers)
        stream = server.url.replace("http://", "ws://") + (
            f"/api/v1/agents/{agent.json()['id']}/stream?token={token}"
        )
        with connect(stream, open_timeout=10) as ws:  # a stream under the limit runs
            ws.send(json.dumps({"task": "hi"}))
            while check_server_message(json.loads(ws.recv(timeout=30)))["type"] != "complete":
                pass
        with contextlib.ExitStack() as stack:
            for _ in range(3):  # three sockets waiting for their task
                stack.enter_context(connect(stream, open_timeout=10))
            assert httpx.get(f"{server.url}/health").status_code == 503
            with pytest.raises(InvalidStatus) as refused:
                connect(stream, open_timeout=10)
            assert refused.value.response.status_code == 503
        deadline = time.monotonic() + 10
        while httpx.get(f"{server.url}/health").status_code != 200:
            assert time.monotonic() < deadline, "the server never took requests again"
            time.sleep(0.1)


def test_a_head_and_a_large_body_in_one_write_are_served(server):
    token = server.token()
    body = json.dumps({"name": "big", "description": "d" * 900, "pad": "x" * 200_000}).encode()
    request = (
        b"POST /api/v1/agents HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        + f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n".encode()
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    with socket.create_connection(address(server), timeout=10) as sock:
        sock.sendall(request)  # far more than CADRE_MAX_HEADER_BYTES, but the head is small
        reply = read_until_closed(sock, time.monotonic() + 10)
    assert reply.split(b" ", 2)[1] == b"422", reply[:300]  # judged (pad is no field), not 431


def test_pipelined_requests_are_all_served(server):
    # 50 heads of 1 KiB in one write: 50 KiB at once, over CADRE_MAX_HEADER_BYTES in all
    one = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"p" * 1000 + b"\r\n\r\n"
    last = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    with socket.create_connection(address(server), timeout=10) as sock:
        sock.sendall(one * 49 + last)
        reply = read_until_closed(sock, time.monotonic() + 10)
    assert reply.count(b"HTTP/1.1 200 OK") == 50
