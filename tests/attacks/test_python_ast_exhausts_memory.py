"""Hardening: eight parallel ~1 MiB sources took python_ast_parser's server to 2.6 GB."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.attacks.conftest import Attacked, assert_refused

LIMIT = 256 * 1024  # CADRE_MAX_AST_SOURCE_BYTES's default
FUNCTION = "def f{tag}_{n}(a, b=1, *rest, **named):\n    return [a, b, rest, named, {n}]\n\n"


def near_limit(tag: int) -> tuple[str, int]:
    """A source just under the limit, and how many functions it defines."""
    parts: list[str] = []
    size = 0
    while True:
        part = FUNCTION.format(tag=tag, n=len(parts))
        if size + len(part) > LIMIT - 64:
            return "".join(parts), len(parts)
        parts.append(part)
        size += len(part)


def peak_memory_mib(server: Attacked) -> float:
    """The server process's peak resident memory (Linux's VmHWM)."""
    assert server.process is not None
    with open(f"/proc/{server.process.pid}/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def parse(server: Attacked, headers: dict[str, str], code: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/v1/tools/python_ast_parser/execute",
        json={"args": {"code": code}},
        headers=headers,
        timeout=120,
    )


@pytest.fixture(scope="module")
def headers(server: Attacked) -> dict[str, str]:
    return server.headers("parser")


def test_eight_parallel_near_limit_sources_parse_while_health_answers(server, headers):
    sources = [near_limit(tag) for tag in range(8)]
    assert all(LIMIT - 200 < len(code) <= LIMIT for code, _ in sources)
    done = threading.Event()
    health: list[int] = []

    def watch() -> None:
        with httpx.Client(timeout=60) as client:
            while not done.is_set():
                health.append(client.get(f"{server.url}/health").status_code)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda s: parse(server, headers, s[0]), sources))
    finally:
        done.set()
        watcher.join()
    for (code, count), reply in zip(sources, replies, strict=True):
        assert reply.status_code == 200, reply.text[:500]
        functions = reply.json()["result"]["functions"]
        assert len(functions) == count
        assert functions[-1]["name"] == code.rsplit("def ", 1)[1].split("(", 1)[0]
    assert health and set(health) == {200}
    # The parses ran in children: the server never held eight trees (it reached 2.6 GB).
    peak = peak_memory_mib(server)
    assert peak < 400


def test_a_source_over_the_limit_is_422_naming_code(server, headers):
    reply = parse(server, headers, "#" * (LIMIT + 1))
    problem = assert_refused(reply, 422, "source_too_large")
    assert problem["details"] == {"args.code": f"longer than {LIMIT} bytes"}
    multibyte = parse(server, headers, "# " + "é" * (LIMIT // 2))  # under in characters
    assert_refused(multibyte, 422, "source_too_large")


@pytest.mark.parametrize(
    "code",
    [
        "(" * 100_000 + ")" * 100_000,  # nested parentheses
        "x = " + "-" * 200_000 + "1",  # a deep unary chain
        "x = " + "1+" * 120_000 + "1",  # a huge expression
        "class C(" + "a." * 100_000 + "b): ...",  # deep attribute chain in a base
        "x = 1\x00",
    ],
    ids=["parens", "unary", "binop", "bases", "null"],
)
def test_a_pathological_source_is_a_clean_tool_error(server, headers, code):
    assert_refused(parse(server, headers, code), 422, "tool_error")
    assert httpx.get(f"{server.url}/health").status_code == 200  # the server lives on


def test_a_pathological_source_inside_a_run_is_a_tool_result_the_model_hears(server, headers):
    httpx.post(
        f"{server.url}/api/v1/agents",
        json={"name": "outliner", "tools": ["python_ast_parser"]},
        headers=headers,
    )
    # (inputs hold at most 64 KiB)
    calls = [{"tool": "python_ast_parser", "args": {"code": "x = " + "-" * 50_000 + "1"}}]
    reply = httpx.post(
        f"{server.url}/api/v1/agents/outliner/execute",
        json={"task": "outline", "inputs": {"echo": {"tool_calls": calls}}},
        headers=headers,
    )
    assert reply.status_code == 200, reply.text
    execution_id = reply.json()["execution_id"]
    for _ in range(600):
        state = httpx.get(f"{server.url}/api/v1/executions/{execution_id}", headers=headers)
        if state.json()["status"] in ("completed", "failed", "cancelled"):
            break
        threading.Event().wait(0.05)
    assert state.json()["status"] == "completed"
    events = httpx.get(
        f"{server.url}/api/v1/executions/{execution_id}/events", headers=headers
    ).json()["events"]
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["code"] == "tool_error"
