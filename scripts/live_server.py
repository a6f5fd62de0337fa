"""Start Cadre in a subprocess on a free loopback port, for fuzzing and benchmarks."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log_path: Path


def _environment(data_dir: Path, env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, "CADRE_DATA_DIR": str(data_dir), "CADRE_LOG_LEVEL": "WARNING", **env}


def _wait_until_healthy(base: str, process: subprocess.Popen, log_name: str) -> None:
    """Poll ``/health`` every 20 ms (test suites start hundreds of servers) for up to 30 s."""
    deadline = time.monotonic() + 30
    with httpx.Client(timeout=1) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}; see {log_name}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{base}/health").status_code == 200:
                    return
            time.sleep(0.02)
    raise RuntimeError("server did not start within 30 s")


@contextlib.contextmanager
def live_server(
    data_dir: Path, *options: str, wrapper: Sequence[str] = (), **env: str
) -> Iterator[Server]:
    """Run a Cadre server (``cadre serve`` with ``options``, its command after ``wrapper``,
    such as valgrind's) with ``CADRE_*`` overrides ``env`` until the block ends."""
    port = free_port()
    environment = _environment(data_dir, env)
    serve = [sys.executable, "-m", "cadre.cli", "serve", "--host", "127.0.0.1", *options]
    command = [*wrapper, *serve]
    log = (data_dir.parent / f"server-{port}.log").open("w")
    process = subprocess.Popen(
        [*command, "--port", str(port)], env=environment, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(base, process, log.name)
        yield Server(base, process, Path(log.name))
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@contextlib.contextmanager
def live_worker(data_dir: Path, *options: str, **env: str) -> Iterator[subprocess.Popen]:
    """Run ``cadre worker`` (PostgreSQL) with ``options`` and ``CADRE_*`` overrides ``env``
    until the block ends (then SIGTERM, SIGKILL if it outstays 30 s)."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"worker-{time.monotonic_ns()}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cadre.cli", "worker", *options],
            env=_environment(data_dir, env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def login_token(base: str, username: str = "fuzzer", password: str = "fuzz-pass-1") -> str:
    """Register (if needed) and log in; returns an access token."""
    httpx.post(
        f"{base}/api/v1/auth/register",
        json={"email": f"{username}@example.com", "username": username, "password": password},
    )
    reply = httpx.post(
        f"{base}/api/v1/auth/login", json={"username": username, "password": password}
    )
    reply.raise_for_status()
    return reply.json()["access_token"]


def reset_postgres(url: str) -> None:
    """Drop and recreate the public schema: the server then migrates an empty database."""
    from playhouse.db_url import connect

    db = connect(url)
    db.execute_sql("DROP SCHEMA IF EXISTS public CASCADE")
    db.execute_sql("CREATE SCHEMA public")
    db.close()
