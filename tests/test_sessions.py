"""Sessions over HTTP: create, list, read, query (JSON and SSE), the multitask strategies,
history, fork, archive, delete, and isolation between users."""

from __future__ import annotations

import io
import json
import stat
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from storage.costs import CostRecord
from storage.executions import Execution
from storage.sessions import Session, SessionMessage, SessionToolCall
from tests.asyncapi_check import check_server_message
from tests.conftest import Account, assert_problem, wait_for_status

TERMINAL = ("completed", "failed", "cancelled")


def new_session(client, account: Account, **body) -> dict:
    reply = client.post(
        "/api/v1/sessions", json={"name": "investigation", **body}, headers=account.headers
    )
    assert reply.status_code == 201, reply.text
    return reply.json()


def query(client, account: Account, session_id: str, message: str, **body):
    return client.post(
        f"/api/v1/sessions/{session_id}/query",
        json={"message": message, **body},
        headers=account.headers,
    )


def slow(tokens: int = 200, delay_ms: int = 20) -> dict:
    return {"echo": {"tokens": tokens, "delay_ms": delay_ms}}


def sse_events(lines) -> Iterator[dict]:
    """Parse a text/event-stream into ``{id, event, data}`` dicts (data decoded as JSON),
    each as soon as its frame is complete."""
    current: dict = {}
    for line in lines:
        if not line:
            if "data" in current:
                current["data"] = json.loads(current["data"])
                yield current
            current = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            current[field] = value[1:] if value.startswith(" ") else value


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


class TestCreateSession:
    def test_seed_request_gives_the_seed_shape(self, client, alice: Account):
        body = new_session(
            client,
            alice,
            name="My Investigation Session",
            mode="interactive",
            sdk_options={"allowed_tools": ["Read", "Write"], "permission_mode": "default"},
        )
        for key in ("id", "user_id", "name", "mode", "status", "sdk_options"):
            assert key in body
        assert body["id"].startswith("sess_")
        assert body["user_id"] == alice.id
        assert body["status"] == "created"
        assert body["mode"] == "interactive"
        assert body["agent_id"] is None
        assert body["sdk_options"] == {
            "allowed_tools": ["filesystem_read", "filesystem_write"],
            "permission_mode": "default",
            "model": None,
            "system_prompt": None,
        }
        assert body["is_fork"] is False and body["parent_session_id"] is None
        assert body["total_messages"] == 0 and body["total_cost_usd"] == 0

    def test_working_directory_is_private_and_under_the_data_dir(
        self, client, alice: Account, settings
    ):
        body = new_session(client, alice)
        path = Path(body["working_directory_path"])
        assert path.is_dir()
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
        assert Path(settings.data_dir).resolve() in path.parents

    def test_unknown_tool_is_named_in_a_422(self, client, alice: Account):
        reply = client.post(
            "/api/v1/sessions",
            json={"name": "x", "sdk_options": {"allowed_tools": ["Read", "Teleport"]}},
            headers=alice.headers,
        )
        body = assert_problem(reply, 422, "validation_error")
        assert "Teleport" in body["message"]
        assert "Teleport" in json.dumps(body["details"])

    def test_unknown_permission_mode_is_a_422(self, client, alice: Account):
        reply = client.post(
            "/api/v1/sessions",
            json={"name": "x", "sdk_options": {"permission_mode": "yolo"}},
            headers=alice.headers,
        )
        assert_problem(reply, 422, "validation_error")

    def test_agent_session_defaults_to_the_agents_tools(self, client, alice: Account):
        client.post(
            "/api/v1/agents",
            json={"name": "coder", "tools": ["calculator"]},
            headers=alice.headers,
        )
        body = new_session(client, alice, agent_id="coder")
        assert body["agent_id"].startswith("agent_")
        assert body["sdk_options"]["allowed_tools"] == ["calculator"]
        assert body["sdk_options"]["permission_mode"] == "default"

    def test_unknown_agent_is_a_404(self, client, alice: Account):
        reply = client.post(
            "/api/v1/sessions", json={"name": "x", "agent_id": "nobody"}, headers=alice.headers
        )
        assert_problem(reply, 404, "agent_not_found")

    def test_template_fills_what_the_request_leaves_out(self, client, alice: Account):
        template = client.post(
            "/api/v1/session-templates",
            json={
                "name": "ops",
                "sdk_options": {
                    "allowed_tools": ["Read"],
                    "permission_mode": "plan",
                    "system_prompt": "Be brief",
                },
            },
            headers=alice.headers,
        ).json()
        body = new_session(
            client,
            alice,
            template_id=template["id"],
            sdk_options={"permission_mode": "acceptEdits"},
        )
        assert body["template_id"] == template["id"]
        assert body["sdk_options"] == {
            "allowed_tools": ["filesystem_read"],
            "permission_mode": "acceptEdits",
            "model": None,
            "system_prompt": "Be brief",
        }

    def test_someone_elses_private_template_is_a_404(self, client, alice: Account, bob: Account):
        template = client.post(
            "/api/v1/session-templates", json={"name": "mine"}, headers=alice.headers
        ).json()
        reply = client.post(
            "/api/v1/sessions",
            json={"name": "x", "template_id": template["id"]},
            headers=bob.headers,
        )
        assert_problem(reply, 404, "template_not_found")

    def test_sessions_per_user_are_capped(self, make_client):
        from tests.conftest import register

        client = make_client(max_sessions_per_user=2)
        alice = register(client, "alice")
        new_session(client, alice)
        new_session(client, alice)
        reply = client.post("/api/v1/sessions", json={"name": "x"}, headers=alice.headers)
        assert_problem(reply, 409, "session_limit_reached")

    def test_forked_mode_cannot_be_asked_for(self, client, alice: Account):
        reply = client.post(
            "/api/v1/sessions", json={"name": "x", "mode": "forked"}, headers=alice.headers
        )
        assert_problem(reply, 422, "validation_error")


class TestListAndGetSessions:
    def test_list_is_paginated_and_filtered(self, client, alice: Account):
        ids = [new_session(client, alice, name=f"s{i}")["id"] for i in range(3)]
        page = client.get("/api/v1/sessions?limit=2", headers=alice.headers).json()
        assert set(page) == {"sessions", "total", "limit", "offset", "next"}
        assert page["total"] == 3 and page["limit"] == 2 and page["offset"] == 0
        assert [s["id"] for s in page["sessions"]] == ids[::-1][:2]
        rest = client.get(page["next"], headers=alice.headers).json()
        assert [s["id"] for s in rest["sessions"]] == ids[:1] and rest["next"] is None
        created = client.get("/api/v1/sessions?status=created", headers=alice.headers).json()
        assert created["total"] == 3
        forked = client.get("/api/v1/sessions?mode=forked", headers=alice.headers).json()
        assert forked["total"] == 0

    def test_total_is_kept_through_creates_forks_and_deletes(self, client, alice, bob):
        """A first page that does not end the list reads the total the owner's writes
        keep (``storage.counts``): it must follow every way a session comes and goes."""
        first, second = (new_session(client, alice, name=f"s{i}")["id"] for i in range(2))
        new_session(client, bob)
        query(client, alice, first, "hello")
        fork = client.post(
            f"/api/v1/sessions/{first}/fork", json={"name": "f"}, headers=alice.headers
        )
        assert fork.status_code == 201, fork.text

        def total() -> int:
            return client.get("/api/v1/sessions?limit=1", headers=alice.headers).json()["total"]

        assert total() == 3
        assert client.delete(f"/api/v1/sessions/{second}", headers=alice.headers).status_code == 204
        assert total() == 2
        assert client.delete(f"/api/v1/sessions/{second}", headers=alice.headers).status_code == 404
        assert total() == 2
        assert client.get("/api/v1/sessions?limit=1", headers=bob.headers).json()["total"] == 1

    def test_skip_is_refused_like_everywhere_else(self, client, alice: Account):
        reply = client.get("/api/v1/sessions?skip=0", headers=alice.headers)
        assert_problem(reply, 422, "validation_error")

    def test_another_users_session_is_a_404_everywhere(self, client, alice: Account, bob: Account):
        session_id = new_session(client, alice)["id"]
        assert client.get("/api/v1/sessions", headers=bob.headers).json()["total"] == 0
        for method, path, body in (
            ("GET", "", None),
            ("GET", "/messages", None),
            ("GET", "/tool-calls", None),
            ("POST", "/query", {"message": "hi"}),
            ("POST", "/fork", {"name": "mine now"}),
            ("POST", "/archive", {"compression": "gzip"}),
            ("GET", "/archive", None),
            ("DELETE", "", None),
        ):
            reply = client.request(
                method, f"/api/v1/sessions/{session_id}{path}", json=body, headers=bob.headers
            )
            assert_problem(reply, 404, "session_not_found")
        assert Session.get_by_id(session_id).status == "created"

    def test_needs_a_token(self, client):
        assert_problem(client.get("/api/v1/sessions"), 401)


class TestQuery:
    def test_seed_query_gives_the_seed_shape(self, client, alice: Account):
        session_id = new_session(client, alice)["id"]
        reply = query(client, alice, session_id, "Analyze the error logs in /var/log/app.log")
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["session_id"] == session_id
        assert body["run_id"].startswith("exec_")
        assert body["status"] == "completed" and body["error"] is None
        assert body["content"] == {
            "type": "text",
            "text": "Analyze the error logs in /var/log/app.log",
        }
        assert body["tool_calls"] == []
        assert set(body["metrics"]) == {"duration_ms", "input_tokens", "output_tokens", "cost_usd"}
        assert body["metrics"]["output_tokens"] == 6
        assert "message_id" in body

    def test_turn_is_an_execution_with_the_sessions_settings_frozen(self, client, alice: Account):
        session_id = new_session(
            client,
            alice,
            sdk_options={
                "allowed_tools": ["Read", "calculator"],
                "permission_mode": "acceptEdits",
                "model": "echo-large",
                "system_prompt": "Answer briefly",
            },
        )["id"]
        run_id = query(client, alice, session_id, "hi").json()["run_id"]
        execution = Execution.get_by_id(run_id)
        assert execution.session_id == session_id
        assert execution.owner_id == alice.id
        assert execution.agent_name == "echo" and execution.provider == "echo"
        assert execution.model == "echo-large"
        assert execution.mode == "full"
        assert execution.config["tools"] == ["filesystem_read", "calculator"]
        assert execution.config["instructions"] == "Answer briefly"
        assert execution.config["permission_mode"] == "acceptEdits"
        reply = client.get(f"/api/v1/executions/{run_id}", headers=alice.headers)
        assert reply.status_code == 200

    def test_a_deleted_or_disabled_agent_stops_the_session(self, client, alice: Account):
        client.post("/api/v1/agents", json={"name": "coder"}, headers=alice.headers)
        session_id = new_session(client, alice, agent_id="coder")["id"]
        client.patch("/api/v1/agents/coder", json={"status": "disabled"}, headers=alice.headers)
        assert_problem(query(client, alice, session_id, "hi"), 409, "agent_disabled")
        client.delete("/api/v1/agents/coder", headers=alice.headers)
        assert_problem(query(client, alice, session_id, "hi"), 409, "session_agent_deleted")
        assert Execution.select().where(Execution.session_id == session_id).count() == 0

    def test_plan_mode_turns_run_in_safe_mode(self, client, alice: Account):
        session_id = new_session(client, alice, sdk_options={"permission_mode": "plan"})["id"]
        run_id = query(client, alice, session_id, "hi").json()["run_id"]
        assert Execution.get_by_id(run_id).mode == "safe"

    def test_status_goes_created_active_completed(self, client, alice: Account):
        session_id = new_session(client, alice)["id"]
        reply = query(
            client, alice, session_id, "hi", inputs=slow(5, 50), multitask_strategy="enqueue"
        )
        assert reply.status_code == 200
        session = client.get(f"/api/v1/sessions/{session_id}", headers=alice.headers).json()
        wait_until(
            lambda: (
                client.get(f"/api/v1/sessions/{session_id}", headers=alice.headers).json()["status"]
                == "completed"
            )
        )
        session = client.get(f"/api/v1/sessions/{session_id}", headers=alice.headers).json()
        assert session["current_run_id"] is None
        assert session["started_at"] is not None and session["last_activity_at"] is not None

    def test_inputs_reach_the_provider(self, client, alice: Account):
        session_id = new_session(client, alice)["id"]
        body = query(client, alice, session_id, "one two", inputs={"echo": {"tokens": 5}}).json()
        assert body["content"]["text"] == "one two one two one"

    def test_tool_calls_are_reported(self, client, alice: Account):
        session_id = new_session(
            client,
            alice,
            sdk_options={"allowed_tools": ["calculator"], "permission_mode": "bypassPermissions"},
        )["id"]
        inputs = {"echo": {"tool_calls": [{"tool": "calculator", "args": {"expression": "6*7"}}]}}
        body = query(client, alice, session_id, "compute", inputs=inputs).json()
        assert body["status"] == "completed"
        assert [(c["tool_name"], c["tool_input"], c["status"]) for c in body["tool_calls"]] == [
            ("calculator", {"expression": "6*7"}, "success")
        ]

    def test_a_failed_turn_still_answers_with_its_error(self, client, alice: Account):
        session_id = new_session(client, alice)["id"]
        body = query(client, alice, session_id, "hi", inputs={"echo": {"fail": "boom"}}).json()
        assert body["status"] == "failed"
        assert "boom" in body["error"]

    def test_archived_session_refuses_queries(self, client, alice: Account):
        session_id = new_session(client, alice)["id"]
        client.post(f"/api/v1/sessions/{session_id}/archive", json={}, headers=alice.headers)
        assert_problem(query(client, alice, session_id, "hi"), 409, "session_archived")

    def test_missing_message_is_a_422(self, client, alice: Account):
        session_id = new_session(client, alice)["id"]
        reply = client.post(f"/api/v1/sessions/{session_id}/query", json={}, headers=alice.headers)
        assert_problem(reply, 422, "validation_error")

    def test_unknown_strategy_is_a_422(self, client, alice: Account):
        session_id = new_session(client, alice)["id"]
        reply = query(client, alice, session_id, "hi", multitask_strategy="shout")
        assert_problem(reply, 422, "validation_error")

    def test_query_streams_chat_events_with_accept_event_stream(self, client, alice: Account):
        session_id = new_session(client, alice)["id"]
        with client.stream(
            "POST",
            f"/api/v1/sessions/{session_id}/query",
            json={"message": "stream these words"},
            headers={**alice.headers, "Accept": "text/event-stream"},
        ) as reply:
            assert reply.status_code == 200
            assert reply.headers["content-type"].startswith("text/event-stream")
            events = list(sse_events(reply.iter_lines()))
        names = [e["event"] for e in events]
        assert names[0] == "run_started" and names[-1] == "run_completed"
        assert names[1:-1] == ["content_delta"] * 3
        assert "".join(e["data"]["content"] for e in events[1:-1]) == "stream these words"
        for event in events:
            check_server_message(event["data"])
            assert event["data"]["session_id"] == session_id
            assert event["id"] == str(event["data"]["seq"])
        ids = [int(e["id"]) for e in events]
        assert ids == sorted(ids)
        assert events[-1]["data"]["metrics"]["output_tokens"] == 3


class TestMultitask:
    def test_reject_while_a_turn_runs_is_a_409_and_leaves_no_execution(
        self, client, alice: Account
    ):
        session_id = new_session(client, alice)["id"]
        first = query(
            client, alice, session_id, "long", inputs=slow(), multitask_strategy="enqueue"
        )
        assert first.status_code == 200
        # The enqueued turn returns once over; start a slow one that holds the session.
        runs_before = Execution.select().where(Execution.session_id == session_id).count()
        holder = threading.Thread(
            target=query, args=(client, alice, session_id, "long"), kwargs={"inputs": slow()}
        )
        holder.start()
        wait_until(lambda: Session.get_by_id(session_id).current_run_id is not None)
        reply = query(client, alice, session_id, "me too")
        body = assert_problem(reply, 409, "session_busy")
        assert "multitask_strategy" in body["message"]
        holder.join()
        runs_after = Execution.select().where(Execution.session_id == session_id).count()
        assert runs_after == runs_before + 1

    def test_enqueued_turns_run_in_the_order_asked(self, client, alice: Account):
        session_id = new_session(client, alice)["id"]
        holder = threading.Thread(
            target=query, args=(client, alice, session_id, "first"), kwargs={"inputs": slow(30)}
        )
        holder.start()
        wait_until(lambda: Session.get_by_id(session_id).current_run_id is not None)
        replies: dict[str, dict] = {}

        def enqueue(message: str) -> None:
            reply = query(client, alice, session_id, message, multitask_strategy="enqueue")
            replies[message] = reply.json()

        threads = []
        for number, message in enumerate(("second", "third"), start=2):
            thread = threading.Thread(target=enqueue, args=(message,))
            thread.start()
            threads.append(thread)
            wait_until(
                lambda n=number: (
                    Execution.select().where(Execution.session_id == session_id).count() == n
                )
            )
        for thread in (holder, *threads):
            thread.join()
        assert replies["second"]["status"] == replies["third"]["status"] == "completed"
        assert replies["third"]["content"]["text"] == "third"
        messages = history(client, alice, session_id)
        users = [m["content"]["content"] for m in messages if m["message_type"] == "user"]
        assert users == ["first", "second", "third"]
        second, third = (Execution.get_by_id(replies[m]["run_id"]) for m in ("second", "third"))
        assert second.completed_at <= third.completed_at

    def test_interrupt_cancels_the_running_turn_and_keeps_what_it_said(
        self, client, alice: Account
    ):
        session_id = new_session(client, alice)["id"]
        first: dict = {}
        holder = threading.Thread(
            target=lambda: first.update(
                query(client, alice, session_id, "alpha beta", inputs=slow(400, 10)).json()
            )
        )
        holder.start()
        wait_until(lambda: Session.get_by_id(session_id).current_run_id is not None)
        run_id = Session.get_by_id(session_id).current_run_id
        wait_until(lambda: Execution.get_by_id(run_id).completion_tokens >= 3)
        second = query(client, alice, session_id, "gamma", multitask_strategy="interrupt")
        holder.join()
        assert second.status_code == 200, second.text
        assert first["status"] == "cancelled"
        assert second.json()["status"] == "completed"
        messages = history(client, alice, session_id)
        kinds = [(m["message_type"], m["run_id"]) for m in messages]
        assert kinds[:2] == [("user", run_id), ("assistant", run_id)]
        assert messages[1]["content"]["content"].startswith("alpha beta alpha")
        assert [m["content"]["content"] for m in messages[2:]] == ["gamma", "gamma"]

    def test_rollback_cancels_the_running_turn_and_discards_its_messages(
        self, client, alice: Account
    ):
        session_id = new_session(client, alice)["id"]
        assert query(client, alice, session_id, "kept").status_code == 200
        holder = threading.Thread(
            target=query,
            args=(client, alice, session_id, "dropped words"),
            kwargs={"inputs": slow(400, 10)},
        )
        holder.start()
        wait_until(lambda: Session.get_by_id(session_id).current_run_id is not None)
        run_id = Session.get_by_id(session_id).current_run_id
        wait_until(lambda: Execution.get_by_id(run_id).completion_tokens >= 3)
        reply = query(client, alice, session_id, "instead", multitask_strategy="rollback")
        holder.join()
        assert reply.status_code == 200, reply.text
        messages = history(client, alice, session_id)
        assert [m["content"]["content"] for m in messages] == ["kept", "kept", "instead", "instead"]
        assert all(m["run_id"] != run_id for m in messages)
        session = client.get(f"/api/v1/sessions/{session_id}", headers=alice.headers).json()
        assert session["total_messages"] == 4
        assert Execution.get_by_id(run_id).status == "cancelled"


def history(client, account: Account, session_id: str) -> list[dict]:
    reply = client.get(f"/api/v1/sessions/{session_id}/messages", headers=account.headers)
    assert reply.status_code == 200, reply.text
    return reply.json()["messages"]


class TestHistory:
    def test_turns_see_and_extend_the_history(self, client, alice: Account):
        session_id = new_session(client, alice)["id"]
        first = query(client, alice, session_id, "hello there").json()
        query(client, alice, session_id, "again")
        page = client.get(
            f"/api/v1/sessions/{session_id}/messages?limit=3", headers=alice.headers
        ).json()
        assert set(page) == {"messages", "total", "limit", "offset", "next"}
        assert page["total"] == 4
        messages = page["messages"]
        assert [m["sequence_number"] for m in messages] == [1, 2, 3]
        assert [m["message_type"] for m in messages] == ["user", "assistant", "user"]
        assert messages[1]["content"] == {"content": "hello there"}
        assert messages[1]["model"] == "echo"
        assert messages[1]["id"] == first["message_id"]
        assert messages[0]["run_id"] == first["run_id"]
        rest = client.get(
            f"/api/v1/sessions/{session_id}/messages?offset=3", headers=alice.headers
        ).json()
        assert [m["sequence_number"] for m in rest["messages"]] == [4]
        following = client.get(page["next"], headers=alice.headers).json()
        assert [m["sequence_number"] for m in following["messages"]] == [4]
        assert following["next"] is None
        session = client.get(f"/api/v1/sessions/{session_id}", headers=alice.headers).json()
        assert session["total_messages"] == 4
        assert session["api_output_tokens"] == 3
        assert session["api_input_tokens"] > 0

    def test_tool_calls_are_listed_oldest_first(self, client, alice: Account):
        session_id = new_session(
            client,
            alice,
            sdk_options={"allowed_tools": ["calculator"], "permission_mode": "bypassPermissions"},
        )["id"]
        calls = [
            {"tool": "calculator", "args": {"expression": "1+1"}},
            {"tool": "calculator", "args": {"expression": "2*3"}},
        ]
        query(client, alice, session_id, "compute", inputs={"echo": {"tool_calls": calls}})
        page = client.get(f"/api/v1/sessions/{session_id}/tool-calls", headers=alice.headers).json()
        assert set(page) == {"tool_calls", "total", "limit", "offset", "next"}
        assert page["total"] == 2
        first = page["tool_calls"][0]
        assert first["tool_name"] == "calculator"
        assert first["tool_input"] == {"expression": "1+1"}
        assert first["status"] == "success"
        assert first["tool_output"] is not None
        assert [c["tool_input"]["expression"] for c in page["tool_calls"]] == ["1+1", "2*3"]
        session = client.get(f"/api/v1/sessions/{session_id}", headers=alice.headers).json()
        assert session["total_tool_calls"] == 2


class TestFork:
    def test_fork_copies_history_and_files(self, client, alice: Account):
        parent = new_session(client, alice)
        query(client, alice, parent["id"], "one")
        query(client, alice, parent["id"], "two")
        notes = Path(parent["working_directory_path"]) / "notes.txt"
        notes.write_text("from the parent")
        reply = client.post(
            f"/api/v1/sessions/{parent['id']}/fork",
            json={"name": "Forked Session"},
            headers=alice.headers,
        )
        assert reply.status_code == 201, reply.text
        child = reply.json()
        assert child["parent_session_id"] == parent["id"]
        assert child["is_fork"] is True and child["mode"] == "forked"
        assert child["status"] == "created" and child["name"] == "Forked Session"
        assert child["working_directory_path"] != parent["working_directory_path"]
        copied = Path(child["working_directory_path"]) / "notes.txt"
        assert copied.read_text() == "from the parent"
        assert [m["content"]["content"] for m in history(client, alice, child["id"])] == [
            "one",
            "one",
            "two",
            "two",
        ]
        # The branches go their own ways.
        query(client, alice, child["id"], "three")
        copied.write_text("changed in the fork")
        assert len(history(client, alice, parent["id"])) == 4
        assert notes.read_text() == "from the parent"
        listed = client.get("/api/v1/sessions?mode=forked", headers=alice.headers).json()
        assert [s["id"] for s in listed["sessions"]] == [child["id"]]

    def test_fork_at_a_sequence_keeps_the_history_up_to_it(self, client, alice: Account):
        parent = new_session(client, alice)
        query(client, alice, parent["id"], "one")
        query(client, alice, parent["id"], "two")
        child = client.post(
            f"/api/v1/sessions/{parent['id']}/fork",
            json={"name": "early", "at_sequence": 2},
            headers=alice.headers,
        ).json()
        assert [m["content"]["content"] for m in history(client, alice, child["id"])] == [
            "one",
            "one",
        ]
        assert child["total_messages"] == 2
        reply = query(client, alice, child["id"], "other")
        assert reply.json()["status"] == "completed"
        kinds = [m["content"]["content"] for m in history(client, alice, child["id"])]
        assert kinds == ["one", "one", "other", "other"]

    def test_fork_past_the_last_message_is_a_422(self, client, alice: Account):
        parent = new_session(client, alice)
        reply = client.post(
            f"/api/v1/sessions/{parent['id']}/fork",
            json={"name": "x", "at_sequence": 5},
            headers=alice.headers,
        )
        assert_problem(reply, 422, "validation_error")

    def test_fork_of_a_working_directory_over_the_quota_is_a_413(self, make_client):
        from tests.conftest import register

        client = make_client(workspace_quota_mb=1)
        alice = register(client, "alice")
        parent = new_session(client, alice)
        big = Path(parent["working_directory_path"]) / "big.bin"
        big.write_bytes(b"x" * (2 * 1024 * 1024))
        reply = client.post(
            f"/api/v1/sessions/{parent['id']}/fork", json={"name": "x"}, headers=alice.headers
        )
        assert_problem(reply, 413, "workspace_quota_exceeded")
        assert client.get("/api/v1/sessions", headers=alice.headers).json()["total"] == 1


class TestArchive:
    def test_archive_is_a_real_tar_gz_with_files_and_history(self, client, alice: Account):
        session = new_session(client, alice)
        query(client, alice, session["id"], "remember this")
        work = Path(session["working_directory_path"])
        (work / "src").mkdir()
        (work / "src" / "main.py").write_text("print('hi')\n")
        (work / "README").write_text("notes")
        reply = client.post(
            f"/api/v1/sessions/{session['id']}/archive",
            json={"compression": "gzip"},
            headers=alice.headers,
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert set(body) == {"archive_id", "archive_path", "archive_size_bytes", "file_count"}
        assert body["file_count"] == 3
        assert body["archive_path"].endswith(".tar.gz")
        download = client.get(f"/api/v1/sessions/{session['id']}/archive", headers=alice.headers)
        assert download.status_code == 200
        assert download.headers["content-type"] == "application/gzip"
        assert len(download.content) == body["archive_size_bytes"]
        with tarfile.open(fileobj=io.BytesIO(download.content), mode="r:gz") as archive:
            names = sorted(archive.getnames())
            assert names == ["session.json", "workspace/README", "workspace/src/main.py"]
            main = archive.extractfile("workspace/src/main.py").read()
            document = json.load(archive.extractfile("session.json"))
        assert main == b"print('hi')\n"
        assert document["session"]["id"] == session["id"]
        assert [m["content"]["content"] for m in document["messages"]] == [
            "remember this",
            "remember this",
        ]
        archived = client.get(f"/api/v1/sessions/{session['id']}", headers=alice.headers).json()
        assert archived["status"] == "archived"
        assert archived["archive_id"] == body["archive_id"]
        assert len(history(client, alice, session["id"])) == 2  # still readable

    def test_archive_without_a_body_and_again_replaces_it(self, client, alice: Account):
        session = new_session(client, alice)
        first = client.post(f"/api/v1/sessions/{session['id']}/archive", headers=alice.headers)
        assert first.status_code == 200, first.text
        second = client.post(
            f"/api/v1/sessions/{session['id']}/archive", json={}, headers=alice.headers
        ).json()
        assert second["archive_id"] != first.json()["archive_id"]
        assert not Path(first.json()["archive_path"]).exists()
        assert Path(second["archive_path"]).exists()
        assert second["file_count"] == 1

    def test_no_archive_yet_is_a_409(self, client, alice: Account):
        session = new_session(client, alice)
        reply = client.get(f"/api/v1/sessions/{session['id']}/archive", headers=alice.headers)
        assert_problem(reply, 409, "session_not_archived")

    def test_other_compressions_are_a_422(self, client, alice: Account):
        session = new_session(client, alice)
        reply = client.post(
            f"/api/v1/sessions/{session['id']}/archive",
            json={"compression": "zip"},
            headers=alice.headers,
        )
        assert_problem(reply, 422, "validation_error")

    def test_archiving_while_a_turn_runs_is_a_409(self, client, alice: Account):
        session = new_session(client, alice)
        holder = threading.Thread(
            target=query,
            args=(client, alice, session["id"], "long"),
            kwargs={"inputs": slow(50, 20)},
        )
        holder.start()
        wait_until(lambda: Session.get_by_id(session["id"]).current_run_id is not None)
        reply = client.post(
            f"/api/v1/sessions/{session['id']}/archive", json={}, headers=alice.headers
        )
        assert_problem(reply, 409, "session_busy")
        holder.join()
        assert Session.get_by_id(session["id"]).status == "completed"

    def test_an_archived_session_can_be_forked_and_continued(self, client, alice: Account):
        session = new_session(client, alice)
        query(client, alice, session["id"], "before")
        client.post(f"/api/v1/sessions/{session['id']}/archive", json={}, headers=alice.headers)
        child = client.post(
            f"/api/v1/sessions/{session['id']}/fork", json={"name": "on"}, headers=alice.headers
        ).json()
        assert query(client, alice, child["id"], "after").json()["status"] == "completed"


class TestDelete:
    def test_delete_removes_directory_archive_and_history_but_keeps_costs(
        self, client, alice: Account
    ):
        session = new_session(client, alice)
        run_id = query(client, alice, session["id"], "spend a little").json()["run_id"]
        archive = client.post(
            f"/api/v1/sessions/{session['id']}/archive", json={}, headers=alice.headers
        ).json()
        reply = client.delete(f"/api/v1/sessions/{session['id']}", headers=alice.headers)
        assert reply.status_code == 204
        assert not Path(session["working_directory_path"]).exists()
        assert not Path(archive["archive_path"]).exists()
        assert_problem(
            client.get(f"/api/v1/sessions/{session['id']}", headers=alice.headers),
            404,
            "session_not_found",
        )
        assert SessionMessage.select().where(SessionMessage.session == session["id"]).count() == 0
        assert CostRecord.select().where(CostRecord.execution_id == run_id).count() == 1
        assert Execution.get_by_id(run_id).status == "completed"

    def test_delete_cancels_a_running_turn(self, client, alice: Account):
        session = new_session(client, alice)
        holder = threading.Thread(
            target=query,
            args=(client, alice, session["id"], "long"),
            kwargs={"inputs": slow(400, 10)},
        )
        holder.start()
        wait_until(lambda: Session.get_by_id(session["id"]).current_run_id is not None)
        run_id = Session.get_by_id(session["id"]).current_run_id
        reply = client.delete(f"/api/v1/sessions/{session['id']}", headers=alice.headers)
        assert reply.status_code == 204
        holder.join()
        assert Execution.get_by_id(run_id).status == "cancelled"
        assert SessionToolCall.select().where(SessionToolCall.session == session["id"]).count() == 0


class TestApproval:
    WRITE = {"tool": "filesystem_write", "args": {"path": "note.txt", "content": "approved"}}

    def test_a_query_stops_for_approval_and_the_turn_goes_on_when_allowed(
        self, client, alice: Account
    ):
        session = new_session(
            client,
            alice,
            sdk_options={"allowed_tools": ["Write"], "permission_mode": "default"},
        )
        reply = query(
            client, alice, session["id"], "write it", inputs={"echo": {"tool_calls": [self.WRITE]}}
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["status"] == "requires_action"
        assert [(c["tool_name"], c["status"]) for c in body["tool_calls"]] == [
            ("filesystem_write", "pending")
        ]
        busy = query(client, alice, session["id"], "meanwhile")
        assert_problem(busy, 409, "session_busy")
        decision = client.post(
            f"/api/v1/runs/{body['run_id']}/approve",
            json={"tool_call_id": body["tool_calls"][0]["call_id"], "decision": "allow"},
            headers=alice.headers,
        )
        assert decision.status_code == 200, decision.text
        wait_for_status(client, alice, body["run_id"], TERMINAL)
        note = Path(session["working_directory_path"]) / "note.txt"
        assert note.read_text() == "approved"
        calls = client.get(
            f"/api/v1/sessions/{session['id']}/tool-calls", headers=alice.headers
        ).json()["tool_calls"]
        assert [(c["tool_name"], c["status"]) for c in calls] == [("filesystem_write", "success")]


class TestWorkingDirectory:
    def test_tools_run_in_the_sessions_working_directory(self, make_client):
        from tests.conftest import register

        client = make_client(shell_enabled=True)
        alice = register(client, "alice")
        session = new_session(
            client,
            alice,
            sdk_options={
                "allowed_tools": ["Bash", "Write"],
                "permission_mode": "bypassPermissions",
            },
        )
        calls = [
            {"tool": "filesystem_write", "args": {"path": "made.txt", "content": "here"}},
            {"tool": "shell", "args": {"command": "pwd; cat made.txt"}},
        ]
        body = query(
            client, alice, session["id"], "look", inputs={"echo": {"tool_calls": calls}}
        ).json()
        assert body["status"] == "completed", body
        work = Path(session["working_directory_path"])
        assert (work / "made.txt").read_text() == "here"
        output = client.get(
            f"/api/v1/sessions/{session['id']}/tool-calls", headers=alice.headers
        ).json()["tool_calls"][1]["tool_output"]
        assert output["stdout"].split() == [str(work.resolve()), "here"], output
