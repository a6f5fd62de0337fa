"""storage.sessions on a migrated database: turn claims, rollback, templates, query counts."""

from __future__ import annotations

import pytest
from playhouse.test_utils import count_queries

from cadre.errors import Conflict, Forbidden, NotFound
from handlers import sessions as session_handlers
from models_gen.api import SessionList, SessionMessageList
from storage import sessions
from storage.executions import Execution
from storage.users import create_user


def make_owner(username: str) -> str:
    return create_user(
        email=f"{username}@example.com", username=username, password_hash="x", full_name=None
    ).id


@pytest.fixture
def alice(client) -> str:
    return make_owner("alice")


@pytest.fixture
def bob(client) -> str:
    return make_owner("bob")


def add_session(owner: str, name: str = "s") -> sessions.Session:
    return sessions.create_session(
        owner=owner,
        name=name,
        sdk_options={"allowed_tools": [], "permission_mode": "default"},
        working_directory_path=f"/nowhere/{name}",
    )


def turn_fields(owner: str) -> dict:
    return {
        "owner": owner,
        "agent_id": "echo",
        "agent_name": "echo",
        "task": "hi",
        "mode": "full",
        "inputs": {},
        "config": {},
        "provider": "echo",
        "model": "echo",
    }


class TestCreateTurn:
    def test_a_claiming_turn_holds_the_session_and_activates_it(self, alice: str):
        session = add_session(alice)
        execution = sessions.create_turn(session.id, claim=True, **turn_fields(alice))
        stored = sessions.Session.get_by_id(session.id)
        assert stored.current_run_id == execution.id
        assert stored.status == "active" and stored.started_at is not None
        assert execution.session_id == session.id

    def test_a_losing_claim_is_a_409_and_leaves_no_execution(self, alice: str):
        session = add_session(alice)
        sessions.create_turn(session.id, claim=True, **turn_fields(alice))
        with pytest.raises(Conflict) as refused:
            sessions.create_turn(session.id, claim=True, **turn_fields(alice))
        assert refused.value.error == "session_busy"
        assert Execution.select().where(Execution.session_id == session.id).count() == 1

    def test_take_over_replaces_only_the_named_holder(self, alice: str):
        session = add_session(alice)
        first = sessions.create_turn(session.id, claim=True, **turn_fields(alice))
        with pytest.raises(Conflict):
            sessions.create_turn(
                session.id, claim=True, take_over="exec_other", **turn_fields(alice)
            )
        second = sessions.create_turn(
            session.id, claim=True, take_over=first.id, **turn_fields(alice)
        )
        assert sessions.Session.get_by_id(session.id).current_run_id == second.id

    def test_an_enqueued_turn_does_not_claim(self, alice: str):
        session = add_session(alice)
        holder = sessions.create_turn(session.id, claim=True, **turn_fields(alice))
        sessions.create_turn(session.id, claim=False, **turn_fields(alice))
        assert sessions.Session.get_by_id(session.id).current_run_id == holder.id

    def test_an_archived_session_stays_archived(self, alice: str):
        session = add_session(alice)
        sessions.update_session(session.id, status="archived")
        sessions.create_turn(session.id, claim=False, **turn_fields(alice))
        assert sessions.Session.get_by_id(session.id).status == "archived"


class TestDiscardRun:
    def test_only_that_runs_messages_and_calls_go_and_the_counts_follow(self, alice: str):
        session = add_session(alice)
        sessions.append_messages(
            session.id,
            [
                {"message_type": "user", "content": {"content": "a"}, "run_id": "exec_a"},
                {"message_type": "user", "content": {"content": "b"}, "run_id": "exec_b"},
            ],
        )
        for run_id in ("exec_a", "exec_b"):
            sessions.record_tool_call(
                session.id,
                run_id=run_id,
                call_id="call_1",
                tool_name="calculator",
                tool_input={},
                status="success",
            )
        sessions.discard_run(session.id, "exec_b")
        assert [m.content["content"] for m in sessions.history(session.id)] == ["a"]
        stored = sessions.Session.get_by_id(session.id)
        assert stored.total_messages == 1
        remaining = sessions.SessionToolCall.select().where(
            sessions.SessionToolCall.session == session.id
        )
        assert [c.run_id for c in remaining] == ["exec_a"]


class TestTemplates:
    def test_visibility_and_ownership(self, alice: str, bob: str):
        private = sessions.create_template(bob, name="p", sdk_options={})
        public = sessions.create_template(bob, name="q", sdk_options={}, is_public=True)
        with pytest.raises(NotFound):
            sessions.get_template(private.id, alice)
        assert sessions.get_template(public.id, alice).id == public.id
        with pytest.raises(Forbidden):
            sessions.get_own_template(public.id, alice)
        assert sessions.get_own_template(public.id, bob).id == public.id


class TestQueryCounts:
    def test_a_partial_page_of_sessions_is_one_query(self, alice: str):
        for number in range(3):
            add_session(alice, f"s{number}")
        with count_queries() as counter:
            page = sessions.list_sessions(alice, status=None, mode=None, limit=10, offset=0)
        assert (len(page.rows), page.total, page.after, counter.count) == (3, 3, None, 1)

    def test_list_handler_adds_no_query_per_session(self, alice: str):
        for number in range(20):
            add_session(alice, f"s{number}")
        with count_queries() as counter:
            reply, _ = session_handlers.list_sessions(alice, limit=10, offset=0)
        page = SessionList.model_validate_json(reply)
        assert len(page.sessions) == 10 and page.total == 20
        assert counter.count == 2  # the page and its count

    def test_message_pages_add_no_query_per_message(self, alice: str):
        session = add_session(alice)
        sessions.append_messages(
            session.id,
            [{"message_type": "user", "content": {"content": str(n)}} for n in range(30)],
        )
        with count_queries() as counter:
            reply, _ = session_handlers.list_session_messages(alice, session.id, limit=10, offset=0)
        page = SessionMessageList.model_validate_json(reply)
        assert [m.sequence_number for m in page.messages] == list(range(1, 11))
        assert counter.count == 3  # the session, the page, its count
