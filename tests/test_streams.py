"""WebSocket and SSE streams: replay, live, resume, commands, auth; messages per asyncapi.yaml."""

from __future__ import annotations

import contextlib
import json
import time

import pytest
from starlette.websockets import WebSocketDisconnect

from tests.asyncapi_check import check_server_message
from tests.conftest import (
    Account,
    assert_problem,
    events_of,
    execute,
    joined_tokens,
    seqs_of,
    wait_for_status,
)
from tests.test_auth import forge

TERMINAL = ("completed", "failed", "cancelled")


@pytest.fixture
def coder(client, alice: Account) -> str:
    client.post("/api/v1/agents", json={"name": "coder"}, headers=alice.headers)
    return "coder"


def receive_until_complete(ws) -> list[dict]:
    messages = []
    while True:
        message = check_server_message(ws.receive_json())
        messages.append(message)
        if message["type"] == "complete":
            return messages


def sse_events(lines) -> list[dict]:
    """Parse SSE frames into their data, checking id/event against the payload."""
    events, frame = [], {}
    for line in lines:
        if line == "":
            if "data" in frame:
                event = check_server_message(json.loads(frame["data"]))
                assert frame["id"] == str(event["seq"])
                assert frame["event"] == event["type"]
                events.append(event)
                if event["type"] == "complete":
                    return events
            frame = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            frame[key] = value
    return events


class TestAgentStream:
    def test_seed_websocket_example_streams_tokens_then_complete(self, client, alice, coder):
        with client.websocket_connect(
            f"/api/v1/agents/{coder}/stream?token={alice.access_token}"
        ) as ws:
            ws.send_text(json.dumps({"task": "Implement feature X", "mode": "safe"}))
            messages = receive_until_complete(ws)
        tokens = [m["content"] for m in messages if m["type"] == "token"]
        assert "".join(tokens) == "Implement feature X"
        complete = messages[-1]
        assert complete["result"]["output"] == "Implement feature X"
        assert complete["cost"] == 0
        execution_id = complete["execution_id"]
        assert all(m["execution_id"] == execution_id for m in messages)
        assert seqs_of(messages) == list(range(1, messages[-1]["seq"] + 1))

    def test_token_may_come_in_an_auth_message(self, client, alice, coder):
        with client.websocket_connect(f"/api/v1/agents/{coder}/stream") as ws:
            ws.send_json({"type": "auth", "token": alice.access_token})
            ws.send_json({"task": "hi"})
            assert receive_until_complete(ws)[-1]["status"] == "completed"

    @pytest.mark.parametrize("query", ["", "?token=garbage"])
    def test_missing_or_bad_token_closes_with_policy_violation(self, client, coder, query):
        with client.websocket_connect(f"/api/v1/agents/{coder}/stream{query}") as ws:
            if not query:
                ws.send_json({"task": "no auth message first"})
            message = check_server_message(ws.receive_json())
            assert message["type"] == "protocol_error"
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
        assert closed.value.code == 1008

    def test_token_expiring_mid_stream_closes_with_policy_violation(
        self, client, settings, alice, coder
    ):
        """The rule SSE streams follow too (``cadre.streams.token_problem``)."""
        token = forge(settings, alice, exp=int(time.time()) + 2)
        with client.websocket_connect(f"/api/v1/agents/{coder}/stream?token={token}") as ws:
            ws.send_json({"task": "slow", "inputs": {"echo": {"tokens": 600, "delay_ms": 100}}})
            messages = []
            with pytest.raises(WebSocketDisconnect) as closed:
                while True:
                    messages.append(check_server_message(ws.receive_json()))
        assert closed.value.code == 1008
        assert (messages[-1]["type"], messages[-1]["error"]) == ("protocol_error", "token_expired")
        execution_id = messages[0]["execution_id"]
        client.post(f"/api/v1/executions/{execution_id}/cancel", headers=alice.headers)

    def test_client_closing_right_after_complete_is_a_clean_end(self, client, alice, coder):
        # Most clients hang up as soon as they read ``complete``; the server then closes a
        # socket that is already gone (with CADRE_TEST_LIVE=1 its log must show no error).
        for _ in range(3):
            with client.websocket_connect(
                f"/api/v1/agents/{coder}/stream?token={alice.access_token}"
            ) as ws:
                ws.send_json({"task": "hang up early"})
                assert receive_until_complete(ws)[-1]["result"]["output"] == "hang up early"
                ws.close(1000)
        executions = client.get("/api/v1/executions", headers=alice.headers).json()
        assert [e["status"] for e in executions["executions"]] == ["completed"] * 3

    def test_invalid_task_message_names_the_field(self, client, alice, coder):
        with client.websocket_connect(
            f"/api/v1/agents/{coder}/stream?token={alice.access_token}"
        ) as ws:
            ws.send_json({"task": "", "mode": "yolo"})
            message = check_server_message(ws.receive_json())
            assert message["error"] == "validation_error"
            assert set(message["details"]) == {"body.task", "body.mode"}
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
        assert closed.value.code == 1007

    def test_other_users_agent_is_not_found(self, client, alice, bob, coder):
        with client.websocket_connect(
            f"/api/v1/agents/{coder}/stream?token={bob.access_token}"
        ) as ws:
            ws.send_json({"task": "steal"})
            assert check_server_message(ws.receive_json())["error"] == "agent_not_found"
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
        assert closed.value.code == 4404

    def test_cancel_command_stops_the_stream(self, client, alice, coder):
        with client.websocket_connect(
            f"/api/v1/agents/{coder}/stream?token={alice.access_token}"
        ) as ws:
            ws.send_json({"task": "go", "inputs": {"echo": {"tokens": 1000, "delay_ms": 10}}})
            while check_server_message(ws.receive_json())["type"] != "token":
                pass
            ws.send_json({"type": "ping"})
            ws.send_json({"type": "cancel"})
            messages = receive_until_complete(ws)
        assert {"type": "pong"} in messages
        assert messages[-1]["status"] == "cancelled"
        assert len(seqs_of([m for m in messages if m["type"] == "token"])) < 1000

    def test_a_dropped_client_does_not_stop_the_execution(self, client, alice, coder):
        with client.websocket_connect(
            f"/api/v1/agents/{coder}/stream?token={alice.access_token}"
        ) as ws:
            ws.send_json({"task": "keep going", "inputs": {"echo": {"tokens": 30, "delay_ms": 5}}})
            while (message := check_server_message(ws.receive_json()))["type"] != "token":
                pass
        done = wait_for_status(client, alice, message["execution_id"], TERMINAL)
        assert done["status"] == "completed"
        assert done["usage"]["completion_tokens"] == 30


class TestExecutionStream:
    def test_replays_after_seq_then_follows_live(self, client, alice, coder):
        execution_id = execute(
            client, alice, coder, inputs={"echo": {"tokens": 30, "delay_ms": 10}}
        )
        with client.websocket_connect(
            f"/api/v1/executions/{execution_id}/stream?after=0&token={alice.access_token}"
        ) as ws:
            first = [check_server_message(ws.receive_json()) for _ in range(5)]
        # reconnect where we left off: nothing lost, nothing repeated
        with client.websocket_connect(
            f"/api/v1/executions/{execution_id}/stream?after={first[-1]['seq']}"
            f"&token={alice.access_token}"
        ) as ws:
            rest = receive_until_complete(ws)
        seqs = seqs_of(first + rest)
        assert seqs == list(range(1, len(seqs) + 1))
        stored = events_of(client, alice, execution_id)
        assert seqs == [e["seq"] for e in stored]
        assert joined_tokens(first + rest) == joined_tokens(stored)

    def test_finished_execution_replays_everything_and_closes(self, client, alice, coder):
        execution_id = execute(client, alice, coder)
        wait_for_status(client, alice, execution_id, TERMINAL)
        with client.websocket_connect(
            f"/api/v1/executions/{execution_id}/stream?token={alice.access_token}"
        ) as ws:
            messages = receive_until_complete(ws)
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
        assert closed.value.code == 1000
        stored = events_of(client, alice, execution_id)
        assert seqs_of(messages) == [e["seq"] for e in stored]
        assert joined_tokens(messages) == joined_tokens(stored)
        others = [m for m in messages if m["type"] != "token"]
        assert others == [e for e in stored if e["type"] != "token"]

    def test_resume_of_a_completed_execution_is_a_command_error(self, client, alice, coder):
        execution_id = execute(
            client, alice, coder, inputs={"echo": {"tokens": 50, "delay_ms": 10}}
        )
        with client.websocket_connect(
            f"/api/v1/executions/{execution_id}/stream?token={alice.access_token}"
        ) as ws:
            ws.send_json({"type": "resume"})
            ws.send_json({"type": "dance"})
            messages = receive_until_complete(ws)
        errors = [m for m in messages if m["type"] == "command_error"]
        assert [(e["command"], e["error"]) for e in errors] == [
            ("resume", "invalid_transition"),
            ("dance", "unknown_command"),
        ]

    def test_someone_elses_execution_closes_with_not_found(self, client, alice, bob, coder):
        execution_id = execute(client, alice, coder)
        with client.websocket_connect(
            f"/api/v1/executions/{execution_id}/stream?token={bob.access_token}"
        ) as ws:
            assert check_server_message(ws.receive_json())["error"] == "execution_not_found"
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
        assert closed.value.code == 4404


class TestServerSentEvents:
    def test_sse_streams_with_ids_and_resumes_from_last_event_id(self, client, alice, coder):
        execution_id = execute(
            client, alice, coder, inputs={"echo": {"tokens": 20, "delay_ms": 10}}
        )
        url = f"/api/v1/executions/{execution_id}/events/stream"
        headers = alice.headers  # no Accept needed: this path only streams
        with client.stream("GET", url, headers=headers) as reply:
            assert reply.headers["content-type"].startswith("text/event-stream")
            first = []
            for event in sse_events(reply.iter_lines()):
                first.append(event)
                if len(first) == 4:
                    break
        with client.stream(
            "GET", url, headers={**headers, "Last-Event-ID": str(first[-1]["seq"])}
        ) as reply:
            rest = sse_events(reply.iter_lines())
        seqs = seqs_of(first + rest)
        assert seqs == list(range(1, len(seqs) + 1))
        assert rest[-1]["type"] == "complete"

    def test_stream_ends_with_a_problem_once_its_token_expires(
        self, client, settings, alice, coder
    ):
        execution_id = execute(
            client, alice, coder, inputs={"echo": {"tokens": 600, "delay_ms": 100}}
        )
        token = forge(settings, alice, exp=int(time.time()) + 2)
        url = f"/api/v1/executions/{execution_id}/events/stream"
        with client.stream("GET", url, headers={"Authorization": f"Bearer {token}"}) as reply:
            lines = list(reply.iter_lines())
        assert lines[-3:-1] == ["event: error", lines[-2]] and lines[-2].startswith("data: ")
        problem = check_server_message(json.loads(lines[-2].removeprefix("data: ")))
        assert (problem["type"], problem["error"]) == ("protocol_error", "token_expired")
        assert "complete" not in [e["type"] for e in sse_events(lines[:-3])]  # cut short
        client.post(f"/api/v1/executions/{execution_id}/cancel", headers=alice.headers)

    def test_last_event_id_past_any_seq_is_refused_not_a_server_error(self, client, alice, coder):
        execution_id = execute(client, alice, coder)
        url = f"/api/v1/executions/{execution_id}/events"
        too_long = client.get(url, headers={**alice.headers, "Last-Event-ID": "9" * 19})
        assert_problem(too_long, 422, "validation_error")
        largest = client.get(url, headers={**alice.headers, "Last-Event-ID": "9" * 18})
        assert largest.status_code == 200, largest.text
        assert largest.json()["events"] == []

    def test_sse_sends_keepalive_comments_while_idle(self, make_client):
        from tests.conftest import register

        client = make_client(stream_keepalive_seconds=0.05)
        alice = register(client, "alice")
        client.post("/api/v1/agents", json={"name": "coder"}, headers=alice.headers)
        execution_id = execute(
            client, alice, "coder", inputs={"echo": {"tokens": 3, "delay_ms": 300}}
        )
        with client.stream(
            "GET", f"/api/v1/executions/{execution_id}/events/stream", headers=alice.headers
        ) as reply:
            lines = list(reply.iter_lines())
        assert ": keep-alive" in lines
        assert sse_events(lines)[-1]["type"] == "complete"

    def test_events_path_still_streams_when_asked_for_event_stream(self, make_client):
        """The Accept-based stream of /events, from before /events/stream, keeps working.

        It is not part of the /events operation's typed contract (JSON only), so this app
        runs without response validation, as production does.
        """
        from tests.conftest import register

        client = make_client(validate_responses=False)
        alice = register(client, "alice")
        client.post("/api/v1/agents", json={"name": "coder"}, headers=alice.headers)
        execution_id = execute(client, alice, "coder", inputs={"echo": {"tokens": 5}})
        headers = {**alice.headers, "Accept": "text/event-stream", "Last-Event-ID": "2"}
        with client.stream(
            "GET", f"/api/v1/executions/{execution_id}/events", headers=headers
        ) as reply:
            assert reply.headers["content-type"].startswith("text/event-stream")
            events = sse_events(reply.iter_lines())
        assert seqs_of(events)[0] == 3 and events[-1]["type"] == "complete"

    def test_stream_of_someone_elses_execution_is_404(self, client, alice, bob, coder):
        execution_id = execute(client, alice, coder)
        reply = client.get(f"/api/v1/executions/{execution_id}/events/stream", headers=bob.headers)
        assert_problem(reply, 404)

    def test_each_events_reply_has_one_media_type_for_typed_clients(self):
        from cadre.spec_docs import authored_spec

        paths = authored_spec()["paths"]
        listed = paths["/api/v1/executions/{execution_id}/events"]["get"]["responses"]["200"]
        streamed = paths["/api/v1/executions/{execution_id}/events/stream"]["get"]["responses"]
        assert list(listed["content"]) == ["application/json"]
        assert list(streamed["200"]["content"]) == ["text/event-stream"]


class TestManyStreams:
    def test_fifty_concurrent_streams_get_independent_complete_sequences(
        self, client, alice, coder
    ):
        ids = [
            execute(client, alice, coder, f"task number {i}", inputs={"echo": {"delay_ms": 5}})
            for i in range(50)
        ]
        outputs = {}
        with contextlib.ExitStack() as stack:
            sockets = [
                stack.enter_context(
                    client.websocket_connect(
                        f"/api/v1/executions/{i}/stream?token={alice.access_token}"
                    )
                )
                for i in ids
            ]
            for execution_id, ws in zip(ids, sockets, strict=True):
                messages = receive_until_complete(ws)
                assert {m["execution_id"] for m in messages} == {execution_id}
                assert seqs_of(messages) == list(range(1, messages[-1]["seq"] + 1))
                outputs[execution_id] = messages[-1]["result"]["output"]
        assert outputs == {i: f"task number {n}" for n, i in enumerate(ids)}
