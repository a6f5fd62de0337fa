"""POST /api/v1/chat: JSON and Server-Sent Events, new and existing sessions, and the
chat stream read by a real HTTP client against a live server under concurrency."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from scripts.live_server import live_server, login_token, reset_postgres
from storage.executions import Execution
from storage.sessions import Session
from tests.asyncapi_check import check_server_message
from tests.conftest import TEST_DATABASE_URL, Account, assert_problem
from tests.test_sessions import sse_events


@pytest.fixture
def assistant(client, alice: Account) -> str:
    reply = client.post("/api/v1/agents", json={"name": "assistant"}, headers=alice.headers)
    assert reply.status_code == 201
    return reply.json()["id"]


def chat(client, account: Account, **body):
    return client.post("/api/v1/chat", json=body, headers=account.headers)


class TestChatJson:
    def test_non_streaming_chat_answers_the_full_text(self, client, alice, assistant):
        reply = chat(client, alice, agent_id="assistant", message="Hello there!", stream=False)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["response"] == "Hello there!"
        assert body["status"] == "completed" and body["error"] is None
        assert body["metrics"]["output_tokens"] == 2
        session = Session.get_by_id(body["session_id"])
        assert session.agent_id == assistant
        assert session.name == "Hello there!"
        assert Execution.get_by_id(body["run_id"]).session_id == session.id

    def test_chat_continues_a_session(self, client, alice, assistant):
        first = chat(client, alice, agent_id="assistant", message="one").json()
        second = chat(
            client, alice, agent_id=assistant, message="two", session_id=first["session_id"]
        ).json()
        assert second["session_id"] == first["session_id"]
        messages = client.get(
            f"/api/v1/sessions/{first['session_id']}/messages", headers=alice.headers
        ).json()["messages"]
        assert [m["content"]["content"] for m in messages] == ["one", "one", "two", "two"]

    def test_echo_is_the_default_agent(self, client, alice):
        body = chat(client, alice, agent_id="echo", message="hi").json()
        assert body["response"] == "hi"
        assert Session.get_by_id(body["session_id"]).agent_id is None

    def test_another_agent_on_a_session_is_a_409(self, client, alice, assistant):
        first = chat(client, alice, agent_id="assistant", message="one").json()
        reply = chat(client, alice, agent_id="echo", message="x", session_id=first["session_id"])
        assert_problem(reply, 409, "session_agent_mismatch")

    def test_unknown_agent_is_a_404_and_leaves_no_session(self, client, alice):
        reply = chat(client, alice, agent_id="nobody", message="hi")
        assert_problem(reply, 404, "agent_not_found")
        assert Session.select().count() == 0

    def test_a_disabled_agent_leaves_no_session(self, client, alice, assistant):
        client.patch("/api/v1/agents/assistant", json={"status": "disabled"}, headers=alice.headers)
        assert_problem(chat(client, alice, agent_id="assistant", message="hi"), 409)
        assert Session.select().count() == 0

    def test_another_users_session_is_a_404(self, client, alice, bob, assistant):
        first = chat(client, alice, agent_id="assistant", message="one").json()
        reply = chat(client, bob, agent_id="echo", message="x", session_id=first["session_id"])
        assert_problem(reply, 404, "session_not_found")

    def test_inputs_steer_the_provider_and_failures_are_reported(self, client, alice):
        body = chat(
            client, alice, agent_id="echo", message="x", inputs={"echo": {"fail": "down"}}
        ).json()
        assert body["status"] == "failed" and "down" in body["error"]

    def test_bad_bodies_are_422(self, client, alice):
        assert_problem(chat(client, alice, message="no agent"), 422, "validation_error")
        assert_problem(
            chat(client, alice, agent_id="echo", message="x", stream="yes"), 422, "validation_error"
        )


class TestChatStream:
    def test_stream_sends_the_seed_events_in_order(self, client, alice, assistant):
        with client.stream(
            "POST",
            "/api/v1/chat",
            json={"agent_id": "assistant", "message": "Tell me a story", "stream": True},
            headers={**alice.headers, "Accept": "text/event-stream"},
        ) as reply:
            assert reply.status_code == 200
            assert reply.headers["content-type"].startswith("text/event-stream")
            events = list(sse_events(reply.iter_lines()))
        names = [e["event"] for e in events]
        assert names == ["run_started"] + ["content_delta"] * 4 + ["run_completed"]
        started = events[0]["data"]
        assert started["run_id"].startswith("exec_") and started["session_id"].startswith("sess_")
        assert "".join(e["data"]["content"] for e in events[1:-1]) == "Tell me a story"
        assert events[-1]["data"]["metrics"]["output_tokens"] == 4
        for event in events:
            check_server_message(event["data"])

    def test_stream_shows_tool_calls_and_failures(self, client, alice):
        session = client.post(
            "/api/v1/sessions",
            json={
                "name": "tools",
                "sdk_options": {"allowed_tools": ["calculator"], "permission_mode": "plan"},
            },
            headers=alice.headers,
        ).json()
        calls = [{"tool": "calculator", "args": {"expression": "2+2"}}]
        with client.stream(
            "POST",
            "/api/v1/chat",
            json={
                "agent_id": "echo",
                "session_id": session["id"],
                "message": "add",
                "stream": True,
                "inputs": {"echo": {"tool_calls": calls}},
            },
            headers=alice.headers,
        ) as reply:
            events = list(sse_events(reply.iter_lines()))
        names = [e["event"] for e in events]
        assert names[:3] == ["run_started", "tool_call", "tool_result"]
        assert names[-1] == "run_completed"
        for event in events:
            check_server_message(event["data"])
        with client.stream(
            "POST",
            "/api/v1/chat",
            json={
                "agent_id": "echo",
                "message": "x",
                "stream": True,
                "inputs": {"echo": {"fail": "provider down"}},
            },
            headers=alice.headers,
        ) as reply:
            events = list(sse_events(reply.iter_lines()))
        assert [e["event"] for e in events] == ["run_started", "run_failed"]
        failed = check_server_message(events[-1]["data"])
        assert failed["error"] == "provider down" and failed["stop_reason"] == "provider_error"

    def test_stream_stops_for_approval_and_goes_on_once_allowed(self, client, alice):
        session = client.post(
            "/api/v1/sessions",
            json={
                "name": "asks",
                "sdk_options": {"allowed_tools": ["Write"], "permission_mode": "default"},
            },
            headers=alice.headers,
        ).json()
        write = {"tool": "filesystem_write", "args": {"path": "a.txt", "content": "yes"}}
        body = {
            "agent_id": "echo",
            "session_id": session["id"],
            "message": "write",
            "stream": True,
            "inputs": {"echo": {"tool_calls": [write]}},
        }
        events: list[dict] = []
        with client.stream("POST", "/api/v1/chat", json=body, headers=alice.headers) as reply:
            lines = reply.iter_lines()
            for event in sse_events(lines):
                events.append(event)
                if event["event"] == "approval_required":
                    decision = client.post(
                        f"/api/v1/runs/{event['data']['run_id']}/approve",
                        json={"tool_call_id": event["data"]["call_id"], "decision": "allow"},
                        headers=alice.headers,
                    )
                    assert decision.status_code == 200, decision.text
        names = [e["event"] for e in events]
        assert names[:2] == ["run_started", "approval_required"]
        assert "tool_result" in names and names[-1] == "run_completed"
        for event in events:
            check_server_message(event["data"])

    def test_frame_ids_resume_on_the_execution_stream(self, client, alice):
        with client.stream(
            "POST",
            "/api/v1/chat",
            json={"agent_id": "echo", "message": "a b c d", "stream": True},
            headers=alice.headers,
        ) as reply:
            events = list(sse_events(reply.iter_lines()))
        run_id = events[0]["data"]["run_id"]
        second = events[2]
        with client.stream(
            "GET",
            f"/api/v1/executions/{run_id}/events/stream",
            headers={**alice.headers, "Last-Event-ID": second["id"]},
        ) as reply:
            rest = list(sse_events(reply.iter_lines()))
        assert "".join(e["data"]["content"] for e in rest if e["event"] == "token") == " c d"


@pytest.fixture
def live(tmp_path):
    env = {"CADRE_RATE_LIMIT_ENABLED": "false"}
    if TEST_DATABASE_URL:  # the concurrency to prove is PostgreSQL's too
        reset_postgres(TEST_DATABASE_URL)
        env["CADRE_DATABASE_URL"] = TEST_DATABASE_URL
    with live_server(tmp_path / "data", **env) as server:
        token = login_token(server.url, "chatter", "chat-pass-1")
        yield server.url, {"Authorization": f"Bearer {token}"}


def test_twenty_concurrent_reject_queries_have_exactly_one_winner(live):
    base, headers = live
    session = httpx.post(f"{base}/api/v1/sessions", json={"name": "busy"}, headers=headers).json()
    barrier = threading.Barrier(20)
    statuses: list[int] = []
    errors: list[str] = []

    def ask(number: int) -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            barrier.wait()
            reply = client.post(
                f"/api/v1/sessions/{session['id']}/query",
                json={"message": f"query {number}", "inputs": {"echo": {"delay_ms": 100}}},
            )
            statuses.append(reply.status_code)
            if reply.status_code == 409:
                errors.append(reply.json()["error"])

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [409] * 19
    assert set(errors) == {"session_busy"}
    runs = httpx.get(f"{base}/api/v1/executions?agent_id=echo", headers=headers).json()
    assert runs["total"] == 1  # the losers left no execution behind
    messages = httpx.get(f"{base}/api/v1/sessions/{session['id']}/messages", headers=headers).json()
    assert messages["total"] == 2


def test_seed_004_python_clients_as_written(live, tmp_path):
    base, headers = live
    httpx.post(f"{base}/api/v1/agents", json={"name": "assistant"}, headers=headers)

    # List agents
    response = httpx.get(f"{base}/api/v1/agents", headers=headers)
    agents = response.json()

    # Chat (non-streaming)
    response = httpx.post(
        f"{base}/api/v1/chat",
        json={"agent_id": "assistant", "message": "Hello!", "stream": False},
        headers=headers,
    )
    result = response.json()
    print(result["response"])
    assert [a["name"] for a in agents["agents"]] == ["assistant"]
    assert result["response"] == "Hello!"

    printed: list[str] = []
    with httpx.stream(
        "POST",
        f"{base}/api/v1/chat",
        json={"agent_id": "assistant", "message": "Tell me a story", "stream": True},
        headers={"Accept": "text/event-stream", **headers},
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                data = line[5:].strip()
                printed.append(data)
    messages = [json.loads(data) for data in printed]
    assert messages[0]["type"] == "run_started"
    assert messages[-1]["type"] == "run_completed"
    assert "".join(m.get("content", "") for m in messages) == "Tell me a story"
    for message in messages:
        check_server_message(message)
