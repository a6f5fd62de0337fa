"""The shell tool on a live server: endless output, a fork bomb, lingering children, secrets."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.attacks.conftest import SECRET_KEY, Attacked, assert_refused, serve
from tests.tools.test_shell import the_kernel_caps_processes

SHELL = "/api/v1/tools/shell/execute"
OUTPUT_BYTES = 65536
FORK_BOMB = "b() { b | b & }; b; sleep 3"


def run(server: Attacked, headers: dict[str, str], command: str, **args: object) -> httpx.Response:
    return httpx.post(
        f"{server.url}{SHELL}",
        json={"args": {"command": command, **args}},
        headers=headers,
        timeout=60,
    )


@pytest.fixture(scope="module")
def shell_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attacked]:
    with serve(
        tmp_path_factory.mktemp("shell"),
        CADRE_SHELL_ENABLED="true",
        CADRE_SHELL_MAX_PROCESSES="32",
        CADRE_SHELL_TIMEOUT_SECONDS="5",
        CADRE_SHELL_OUTPUT_BYTES=str(OUTPUT_BYTES),
    ) as server:
        yield server


def test_the_shell_is_refused_unless_enabled(server: Attacked) -> None:
    problem = assert_refused(run(server, server.headers(), "id"), 403, "tool_refused")
    assert "CADRE_SHELL_ENABLED" in problem["message"]


def test_floods_end_in_clear_replies_while_health_answers(shell_server: Attacked) -> None:
    headers = shell_server.headers("flooder")
    commands = [
        "yes",  # endless output
        "cat /dev/zero >&2",  # endless output on stderr
        "sleep 300",  # past the timeout
        "sleep 300 & echo started",  # a child left behind
    ]
    if the_kernel_caps_processes():
        commands.append(FORK_BOMB)
    done = threading.Event()
    latencies: list[tuple[int, float]] = []

    def watch() -> None:
        with httpx.Client(timeout=30) as client:
            while not done.is_set():
                started = time.monotonic()
                status = client.get(f"{shell_server.url}/health").status_code
                latencies.append((status, time.monotonic() - started))
                time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(len(commands)) as pool:
            replies = list(pool.map(lambda c: run(shell_server, headers, c), commands))
    finally:
        done.set()
        watcher.join()
    assert time.monotonic() - started < 30
    results = []
    for reply in replies:
        assert reply.status_code == 200, reply.text[:500]
        results.append(reply.json()["result"])
    endless, endless_stderr, sleeper, parent = results[:4]
    assert endless["stopped"] == "output_limit" and len(endless["stdout"]) == OUTPUT_BYTES
    assert endless_stderr["truncated"] is True and len(endless_stderr["stderr"]) <= OUTPUT_BYTES
    assert sleeper["timed_out"] is True and sleeper["exit_code"] == -9
    assert parent == {
        "exit_code": 0,
        "stdout": "started\n",
        "stderr": "",
        "timed_out": False,
        "truncated": False,
        "stopped": None,
    }
    if len(results) > 4:
        assert results[4]["stopped"] == "process_limit"
    assert latencies and {status for status, _ in latencies} == {200}
    assert max(seconds for _, seconds in latencies) < 3


def test_the_servers_secrets_are_not_in_the_commands_environment(shell_server: Attacked) -> None:
    reply = run(shell_server, shell_server.headers("snoop"), "env; cat /proc/$$/environ")
    result = reply.json()["result"]
    assert SECRET_KEY not in result["stdout"]
    assert "CADRE_" not in result["stdout"]


def test_a_timeout_over_the_maximum_is_422(shell_server: Attacked) -> None:
    reply = run(shell_server, shell_server.headers("snoop"), "true", timeout=10_000)
    problem = assert_refused(reply, 422)
    assert "args.timeout" in problem["details"]
