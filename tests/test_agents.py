"""The agents API over HTTP: definitions, ownership, inheritance, listing."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from storage.agents import MAX_DEPTH, Agent
from tests.conftest import Account, assert_problem, register

AGENTS = "/api/v1/agents"
INHERITABLE = ["provider", "model", "temperature", "instructions", "tools"]
DEFAULTS = {
    "provider": "echo",
    "model": "echo",
    "temperature": 0.7,
    "instructions": "",
    "tools": [],
}
SEED_CHILD = {
    "name": "python-expert",
    "provider": "openai",
    "model": "gpt-4",
    "temperature": 0.5,
    "instructions": "You are a Python expert",
    "tools": ["python_ast_parser"],
    "parent": "coder",
}


def create(client, account: Account, name: str, **fields) -> dict:
    reply = client.post(AGENTS, json={"name": name, **fields}, headers=account.headers)
    assert reply.status_code == 201, reply.text
    return reply.json()


def fetch(client, account: Account, ref: str) -> dict:
    reply = client.get(f"{AGENTS}/{ref}", headers=account.headers)
    assert reply.status_code == 200, reply.text
    return reply.json()


def patch(client, account: Account, ref: str, body: dict):
    return client.patch(f"{AGENTS}/{ref}", json=body, headers=account.headers)


def listing(client, account: Account, query: str = "") -> dict:
    reply = client.get(f"{AGENTS}{query}", headers=account.headers)
    assert reply.status_code == 200, reply.text
    return reply.json()


def timeless(body: dict) -> dict:
    """A reply without its timestamps, which tests check on their own."""
    return {key: value for key, value in body.items() if key not in ("created_at", "updated_at")}


def moment(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    assert value.tzinfo is not None, text
    return value


def row_values(agent_id: str) -> dict:
    """What the database holds for an agent: only its own values, never inherited ones."""
    row = Agent.get_by_id(agent_id)
    return {
        "name": row.name,
        "owner_id": row.owner_id,
        "parent_id": row.parent_id,
        "status": row.status,
        "provider": row.provider,
        "model": row.model,
        "temperature": row.temperature,
        "instructions": row.instructions,
        "tools": None if row.tools is None else json.loads(row.tools),
    }


def agent_count() -> int:
    return Agent.select().count()


class TestCreateAgent:
    def test_seed_example_creates_a_child_with_every_field_set(self, client, alice: Account):
        coder = create(client, alice, "coder", instructions="You are a helpful coding assistant")

        body = create(client, alice, **SEED_CHILD)

        assert body["id"].startswith("agent_") and body["id"] != coder["id"]
        assert timeless(body) == {
            "id": body["id"],
            "name": "python-expert",
            "provider": "openai",
            "model": "gpt-4",
            "temperature": 0.5,
            "instructions": "You are a Python expert",
            "tools": ["python_ast_parser"],
            "tags": [],
            "parent": "coder",
            "parent_id": coder["id"],
            "status": "active",
            "inherited": [],
            "owner_id": alice.id,
        }
        assert moment(body["created_at"]) == moment(body["updated_at"])
        assert row_values(body["id"]) == {
            "name": "python-expert",
            "owner_id": alice.id,
            "parent_id": coder["id"],
            "status": "active",
            "provider": "openai",
            "model": "gpt-4",
            "temperature": 0.5,
            "instructions": "You are a Python expert",
            "tools": ["python_ast_parser"],
        }

    def test_agent_that_sets_nothing_runs_with_defaults_and_inherits_nothing(
        self, client, alice: Account
    ):
        body = create(client, alice, "plain")

        assert timeless(body) == {
            "id": body["id"],
            "name": "plain",
            **DEFAULTS,
            "tags": [],
            "parent": None,
            "parent_id": None,
            "status": "active",
            "inherited": [],
            "owner_id": alice.id,
        }
        # defaults are applied when reading, never written into the row
        assert row_values(body["id"]) == {
            "name": "plain",
            "owner_id": alice.id,
            "parent_id": None,
            "status": "active",
            **dict.fromkeys(INHERITABLE),
        }

    def test_status_and_an_explicit_null_parent_are_accepted(self, client, alice: Account):
        body = create(client, alice, "off", status="disabled", parent=None)

        assert (body["status"], body["parent"], body["parent_id"]) == ("disabled", None, None)
        assert Agent.get_by_id(body["id"]).status == "disabled"

    def test_inclusive_bounds_are_accepted_and_kept_exactly(self, client, alice: Account):
        cold = create(client, alice, "n" * 64, temperature=0, instructions="i" * 65536)
        hot = create(client, alice, "a.b_c-9", temperature=2)

        assert (cold["name"], cold["temperature"], len(cold["instructions"])) == (
            "n" * 64,
            0,
            65536,
        )
        assert hot["temperature"] == 2
        assert Agent.get_by_id(cold["id"]).temperature == 0

    def test_duplicate_name_for_the_same_owner_is_409(self, client, alice: Account):
        first = create(client, alice, "coder", model="a")

        reply = client.post(AGENTS, json={"name": "coder", "model": "b"}, headers=alice.headers)

        body = assert_problem(reply, 409, "agent_name_taken")
        assert set(body["details"]) == {"name"}
        assert [(a.id, a.model) for a in Agent.select()] == [(first["id"], "a")]

    def test_the_same_name_is_fine_for_another_user(self, client, alice: Account, bob: Account):
        mine = create(client, alice, "coder")
        theirs = create(client, bob, "coder")

        assert mine["id"] != theirs["id"]
        assert (mine["owner_id"], theirs["owner_id"]) == (alice.id, bob.id)
        assert agent_count() == 2

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"name": ""}, "body.name"),
            ({"name": "x" * 65}, "body.name"),
            ({"name": "has space"}, "body.name"),
            ({"name": "slash/name"}, "body.name"),
            ({}, "body.name"),
            ({"name": 7}, "body.name"),
            ({"name": "a", "provider": "gpt"}, "body.provider"),
            ({"name": "a", "provider": None}, "body.provider"),
            ({"name": "a", "model": ""}, "body.model"),
            ({"name": "a", "temperature": -0.01}, "body.temperature"),
            ({"name": "a", "temperature": 2.01}, "body.temperature"),
            ({"name": "a", "temperature": "hot"}, "body.temperature"),
            ({"name": "a", "instructions": "i" * 65537}, "body.instructions"),
            ({"name": "a", "colour": "red"}, "body.colour"),
            ({"name": "a", "tools": "python_ast_parser"}, "body.tools"),
            ({"name": "a", "tools": ["calculator", "calculator"]}, "body.tools"),
            ({"name": "a", "tools": ["calculator", ""]}, "body.tools.1"),
            ({"name": "a", "parent": ""}, "body.parent"),
            ({"name": "a", "status": "paused"}, "body.status"),
        ],
    )
    def test_invalid_field_is_422_naming_it(self, client, alice: Account, body: dict, field: str):
        reply = client.post(AGENTS, json=body, headers=alice.headers)

        problem = assert_problem(reply, 422, "validation_error")
        assert list(problem["details"]) == [field]
        assert agent_count() == 0

    def test_every_invalid_field_is_named_at_once(self, client, alice: Account):
        reply = client.post(
            AGENTS,
            json={"name": "a b", "provider": "gpt", "temperature": 3, "colour": 1},
            headers=alice.headers,
        )

        problem = assert_problem(reply, 422, "validation_error")
        assert set(problem["details"]) == {
            "body.name",
            "body.provider",
            "body.temperature",
            "body.colour",
        }

    def test_unknown_parent_is_422_invalid_parent(self, client, alice: Account):
        reply = client.post(AGENTS, json={"name": "kid", "parent": "ghost"}, headers=alice.headers)

        problem = assert_problem(reply, 422, "invalid_parent")
        assert set(problem["details"]) == {"parent"}
        assert agent_count() == 0

    def test_another_users_agent_cannot_be_a_parent_and_is_not_revealed(
        self, client, alice: Account, bob: Account
    ):
        theirs = create(client, bob, "coder")
        unknown = client.post(
            AGENTS,
            json={"name": "kid", "parent": "agent_01HQZYX3G5N8K2M4P6R8T0V2W4"},
            headers=alice.headers,
        )

        for ref in ("coder", theirs["id"]):
            reply = client.post(AGENTS, json={"name": "kid", "parent": ref}, headers=alice.headers)
            problem = assert_problem(reply, 422, "invalid_parent")
            assert problem["details"].keys() == unknown.json()["details"].keys()
            assert problem["message"] == unknown.json()["message"].replace(
                "agent_01HQZYX3G5N8K2M4P6R8T0V2W4", ref
            )
        assert [a.id for a in Agent.select()] == [theirs["id"]]

    def test_parent_can_be_named_by_id(self, client, alice: Account):
        coder = create(client, alice, "coder")

        kid = create(client, alice, "kid", parent=coder["id"])

        assert (kid["parent"], kid["parent_id"]) == ("coder", coder["id"])

    def test_chain_of_max_depth_resolves_from_its_root_and_one_more_level_is_422(
        self, client, alice: Account
    ):
        create(client, alice, "level1", model="from-the-root")
        for level in range(2, MAX_DEPTH + 1):
            leaf = create(client, alice, f"level{level}", parent=f"level{level - 1}")
        assert (leaf["name"], leaf["model"], leaf["inherited"]) == (
            f"level{MAX_DEPTH}",
            "from-the-root",
            ["model"],
        )

        reply = client.post(
            AGENTS, json={"name": "too-deep", "parent": leaf["name"]}, headers=alice.headers
        )

        problem = assert_problem(reply, 422, "parent_too_deep")
        assert set(problem["details"]) == {"parent"}
        assert agent_count() == MAX_DEPTH

    def test_needs_a_token_with_the_write_scope(self, client, alice: Account):
        assert_problem(client.post(AGENTS, json={"name": "a"}), 401)
        tokens = client.post(
            "/api/v1/auth/login",
            json={"username": "alice", "password": alice.password, "scopes": ["agents:read"]},
        ).json()
        reply = client.post(
            AGENTS,
            json={"name": "a"},
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
        assert_problem(reply, 403)
        assert agent_count() == 0


class TestGetAgent:
    def test_id_and_name_both_find_the_agent(self, client, alice: Account):
        created = create(client, alice, **{**SEED_CHILD, "parent": None})

        assert fetch(client, alice, created["id"]) == created
        assert fetch(client, alice, "python-expert") == created

    def test_a_name_that_looks_like_an_id_is_found_by_name(self, client, alice: Account):
        created = create(client, alice, "agent_smith")

        assert fetch(client, alice, "agent_smith") == created

    @pytest.mark.parametrize("ref", ["ghost", "agent_01HQZYX3G5N8K2M4P6R8T0V2W4"])
    def test_unknown_agent_is_404(self, client, alice: Account, ref: str):
        reply = client.get(f"{AGENTS}/{ref}", headers=alice.headers)

        assert_problem(reply, 404, "agent_not_found")

    def test_other_users_agent_is_404_and_absent_from_lists(
        self, client, alice: Account, bob: Account
    ):
        theirs = create(client, bob, "secret")

        for ref in ("secret", theirs["id"]):
            reply = client.get(f"{AGENTS}/{ref}", headers=alice.headers)
            assert_problem(reply, 404, "agent_not_found")
        assert listing(client, alice)["agents"] == []
        assert listing(client, alice)["total"] == 0

    def test_ancestors_values_are_resolved_on_read(self, client, alice: Account):
        create(client, alice, "coder", model="gpt-4")
        create(client, alice, "kid", parent="coder")

        body = fetch(client, alice, "kid")

        assert (body["model"], body["inherited"]) == ("gpt-4", ["model"])


class TestUpdateAgent:
    def test_seed_example_changes_only_the_given_fields(self, client, alice: Account):
        create(client, alice, "coder")
        before = create(client, alice, **SEED_CHILD)

        reply = patch(
            client,
            alice,
            before["id"],
            {"temperature": 0.3, "instructions": "Updated instructions"},
        )

        assert reply.status_code == 200, reply.text
        after = reply.json()
        assert timeless(after) == {
            **timeless(before),
            "temperature": 0.3,
            "instructions": "Updated instructions",
        }
        assert after["created_at"] == before["created_at"]
        assert moment(after["updated_at"]) > moment(before["updated_at"])
        assert row_values(before["id"])["temperature"] == 0.3
        assert row_values(before["id"])["instructions"] == "Updated instructions"
        assert fetch(client, alice, "python-expert") == after

    def test_rename_moves_the_name(self, client, alice: Account):
        created = create(client, alice, "old")

        reply = patch(client, alice, "old", {"name": "new"})

        assert reply.status_code == 200, reply.text
        assert reply.json()["id"] == created["id"]
        assert Agent.get_by_id(created["id"]).name == "new"
        assert fetch(client, alice, "new")["id"] == created["id"]
        assert_problem(client.get(f"{AGENTS}/old", headers=alice.headers), 404, "agent_not_found")

    def test_renaming_to_its_own_name_is_fine(self, client, alice: Account):
        create(client, alice, "same")

        reply = patch(client, alice, "same", {"name": "same", "model": "m"})

        assert reply.status_code == 200, reply.text
        assert (reply.json()["name"], reply.json()["model"]) == ("same", "m")

    def test_rename_to_a_taken_name_is_409_and_nothing_changes(self, client, alice: Account):
        create(client, alice, "taken")
        mover = create(client, alice, "mover", model="before")

        reply = patch(client, alice, "mover", {"name": "taken", "model": "after"})

        problem = assert_problem(reply, 409, "agent_name_taken")
        assert set(problem["details"]) == {"name"}
        assert fetch(client, alice, mover["id"]) == mover

    def test_name_taken_by_another_user_is_free(self, client, alice: Account, bob: Account):
        create(client, bob, "taken")
        create(client, alice, "mine")

        reply = patch(client, alice, "mine", {"name": "taken"})

        assert reply.status_code == 200, reply.text
        assert reply.json()["owner_id"] == alice.id

    def test_status_can_be_changed(self, client, alice: Account):
        create(client, alice, "worker")

        reply = patch(client, alice, "worker", {"status": "disabled"})

        assert reply.json()["status"] == "disabled"
        assert listing(client, alice, "?status=disabled")["total"] == 1

    def test_empty_patch_is_422(self, client, alice: Account):
        created = create(client, alice, "worker")

        problem = assert_problem(patch(client, alice, "worker", {}), 422, "validation_error")

        assert list(problem["details"]) == ["body"]
        assert fetch(client, alice, "worker") == created

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"colour": "red"}, "body.colour"),
            ({"name": None}, "body.name"),
            ({"name": "a b"}, "body.name"),
            ({"status": None}, "body.status"),
            ({"provider": "gpt"}, "body.provider"),
            ({"temperature": 2.5}, "body.temperature"),
            ({"tools": ["calculator", "calculator"]}, "body.tools"),
            ({"instructions": "i" * 65537}, "body.instructions"),
            ({"parent": ""}, "body.parent"),
        ],
    )
    def test_invalid_field_is_422_naming_it(self, client, alice: Account, body: dict, field: str):
        created = create(client, alice, "worker")

        problem = assert_problem(patch(client, alice, "worker", body), 422, "validation_error")

        assert list(problem["details"]) == [field]
        assert fetch(client, alice, "worker") == created

    @pytest.mark.parametrize("ref", ["ghost", "agent_01HQZYX3G5N8K2M4P6R8T0V2W4"])
    def test_unknown_agent_is_404(self, client, alice: Account, ref: str):
        assert_problem(patch(client, alice, ref, {"model": "m"}), 404, "agent_not_found")

    def test_other_users_agent_is_404_and_unchanged(self, client, alice: Account, bob: Account):
        theirs = create(client, bob, "secret", model="before")

        for ref in ("secret", theirs["id"]):
            reply = patch(client, alice, ref, {"model": "after"})
            assert_problem(reply, 404, "agent_not_found")
        assert fetch(client, bob, "secret") == theirs


class TestDeleteAgent:
    @pytest.mark.parametrize("by", ["id", "name"])
    def test_deleted_agent_is_gone(self, client, alice: Account, by: str):
        created = create(client, alice, "doomed")

        reply = client.delete(f"{AGENTS}/{created[by]}", headers=alice.headers)

        assert reply.status_code == 204
        assert reply.content == b""
        assert not Agent.select().where(Agent.id == created["id"]).exists()
        for ref in ("doomed", created["id"]):
            reply = client.get(f"{AGENTS}/{ref}", headers=alice.headers)
            assert_problem(reply, 404, "agent_not_found")
        assert listing(client, alice)["total"] == 0

    def test_name_is_free_again_after_delete(self, client, alice: Account):
        old = create(client, alice, "reused")
        client.delete(f"{AGENTS}/reused", headers=alice.headers)

        new = create(client, alice, "reused")

        assert new["id"] != old["id"]

    def test_agent_with_children_is_409_and_kept(self, client, alice: Account):
        parent = create(client, alice, "coder")
        create(client, alice, "kid", parent="coder")
        create(client, alice, "other-kid", parent="coder")

        reply = client.delete(f"{AGENTS}/coder", headers=alice.headers)

        problem = assert_problem(reply, 409, "agent_has_children")
        assert sorted(problem["details"]["children"]) == ["kid", "other-kid"]
        assert fetch(client, alice, "coder") == parent
        assert agent_count() == 3

    def test_parent_can_be_deleted_once_its_children_are_gone(self, client, alice: Account):
        create(client, alice, "coder")
        create(client, alice, "kid", parent="coder")

        assert client.delete(f"{AGENTS}/kid", headers=alice.headers).status_code == 204
        assert client.delete(f"{AGENTS}/coder", headers=alice.headers).status_code == 204
        assert agent_count() == 0

    def test_other_users_agent_is_404_and_kept(self, client, alice: Account, bob: Account):
        theirs = create(client, bob, "secret")

        for ref in ("secret", theirs["id"]):
            reply = client.delete(f"{AGENTS}/{ref}", headers=alice.headers)
            assert_problem(reply, 404, "agent_not_found")
        assert fetch(client, bob, "secret") == theirs

    def test_unknown_agent_is_404(self, client, alice: Account):
        reply = client.delete(f"{AGENTS}/ghost", headers=alice.headers)

        assert_problem(reply, 404, "agent_not_found")


class TestInheritance:
    @pytest.fixture
    def chain(self, client, alice: Account) -> dict[str, dict]:
        """root sets four fields, middle overrides two, leaf sets only its temperature."""
        root = create(
            client,
            alice,
            "root",
            provider="openai",
            model="gpt-4",
            temperature=0.2,
            instructions="From the root",
        )
        middle = create(
            client, alice, "middle", parent="root", model="gpt-4o", tools=["calculator"]
        )
        leaf = create(client, alice, "leaf", parent="middle", temperature=1.5)
        return {"root": root, "middle": middle, "leaf": leaf}

    def test_child_inherits_unset_fields_from_parent_chain(self, alice: Account, chain):
        leaf, middle, root = chain["leaf"], chain["middle"], chain["root"]

        assert timeless(leaf) == {
            "id": leaf["id"],
            "name": "leaf",
            "provider": "openai",
            "model": "gpt-4o",
            "temperature": 1.5,
            "instructions": "From the root",
            "tools": ["calculator"],
            "tags": [],
            "parent": "middle",
            "parent_id": middle["id"],
            "status": "active",
            "inherited": ["provider", "model", "instructions", "tools"],
            "owner_id": alice.id,
        }
        assert {k: middle[k] for k in [*INHERITABLE, "inherited", "parent", "parent_id"]} == {
            "provider": "openai",
            "model": "gpt-4o",
            "temperature": 0.2,
            "instructions": "From the root",
            "tools": ["calculator"],
            "inherited": ["provider", "temperature", "instructions"],
            "parent": "root",
            "parent_id": root["id"],
        }
        assert root["inherited"] == []
        assert row_values(leaf["id"]) == {
            "name": "leaf",
            "owner_id": alice.id,
            "parent_id": middle["id"],
            "status": "active",
            **dict.fromkeys(INHERITABLE),
            "temperature": 1.5,
        }

    def test_fields_no_ancestor_sets_take_defaults_and_are_not_inherited(
        self, client, alice: Account
    ):
        create(client, alice, "empty-root")
        create(client, alice, "empty-middle", parent="empty-root", model="mid")

        leaf = create(client, alice, "leaf", parent="empty-middle")

        assert {k: leaf[k] for k in [*INHERITABLE, "inherited"]} == {
            **DEFAULTS,
            "model": "mid",
            "inherited": ["model"],
        }

    def test_falsy_own_values_are_kept_not_inherited(self, client, alice: Account, chain):
        kid = create(
            client, alice, "kid", parent="middle", temperature=0, instructions="", tools=[]
        )

        assert {k: kid[k] for k in [*INHERITABLE, "inherited"]} == {
            "provider": "openai",
            "model": "gpt-4o",
            "temperature": 0,
            "instructions": "",
            "tools": [],
            "inherited": ["provider", "model"],
        }

    def test_changing_an_ancestor_changes_the_childs_effective_values(
        self, client, alice: Account, chain
    ):
        leaf_before = chain["leaf"]

        assert patch(client, alice, "root", {"provider": "anthropic"}).status_code == 200
        assert (
            patch(client, alice, "middle", {"tools": ["calculator", "filesystem_list"]}).status_code
            == 200
        )

        leaf = fetch(client, alice, "leaf")
        assert timeless(leaf) == {
            **timeless(leaf_before),
            "provider": "anthropic",
            "tools": ["calculator", "filesystem_list"],
        }
        assert leaf["updated_at"] == leaf_before["updated_at"]
        listed = {a["name"]: a for a in listing(client, alice)["agents"]}
        assert listed["leaf"] == leaf

    def test_null_makes_an_own_field_inherit_again(self, client, alice: Account, chain):
        kid = create(
            client,
            alice,
            "kid",
            parent="middle",
            provider="echo",
            model="own",
            temperature=1.9,
            instructions="own",
            tools=["filesystem_read"],
        )
        assert kid["inherited"] == []

        reply = patch(client, alice, "kid", dict.fromkeys(INHERITABLE))

        assert reply.status_code == 200, reply.text
        assert {k: reply.json()[k] for k in [*INHERITABLE, "inherited"]} == {
            "provider": "openai",
            "model": "gpt-4o",
            "temperature": 0.2,
            "instructions": "From the root",
            "tools": ["calculator"],
            "inherited": INHERITABLE,
        }
        assert {k: row_values(kid["id"])[k] for k in INHERITABLE} == dict.fromkeys(INHERITABLE)

    def test_null_on_a_root_agent_falls_back_to_defaults(self, client, alice: Account):
        create(client, alice, "solo", model="own", temperature=1.2)

        reply = patch(client, alice, "solo", {"model": None, "temperature": None})

        assert {k: reply.json()[k] for k in [*INHERITABLE, "inherited"]} == {
            **DEFAULTS,
            "inherited": [],
        }

    def test_reparenting_switches_inherited_values(self, client, alice: Account, chain):
        other = create(client, alice, "other", model="claude", provider="anthropic")

        moved = patch(client, alice, "leaf", {"parent": other["id"]}).json()
        assert (moved["parent"], moved["parent_id"]) == ("other", other["id"])
        assert (moved["provider"], moved["model"], moved["instructions"], moved["tools"]) == (
            "anthropic",
            "claude",
            "",
            [],
        )
        assert moved["inherited"] == ["provider", "model"]

        detached = patch(client, alice, "leaf", {"parent": None}).json()
        assert (detached["parent"], detached["parent_id"]) == (None, None)
        assert {k: detached[k] for k in [*INHERITABLE, "inherited"]} == {
            **DEFAULTS,
            "temperature": 1.5,
            "inherited": [],
        }
        assert Agent.get_by_id(chain["leaf"]["id"]).parent_id is None

    def test_own_parent_is_422_parent_cycle_and_nothing_changes(
        self, client, alice: Account, chain
    ):
        before = row_values(chain["root"]["id"])

        for ref in ("root", chain["root"]["id"]):
            reply = patch(client, alice, "root", {"parent": ref, "model": "changed"})
            problem = assert_problem(reply, 422, "parent_cycle")
            assert set(problem["details"]) == {"parent"}
        assert row_values(chain["root"]["id"]) == before
        assert fetch(client, alice, "root") == chain["root"]

    @pytest.mark.parametrize("new_parent", ["middle", "leaf"])
    def test_parent_that_descends_from_the_agent_is_422_parent_cycle(
        self, client, alice: Account, chain, new_parent: str
    ):
        before = {name: row_values(agent["id"]) for name, agent in chain.items()}

        reply = patch(client, alice, "root", {"parent": new_parent, "name": "renamed"})

        assert_problem(reply, 422, "parent_cycle")
        assert {name: row_values(agent["id"]) for name, agent in chain.items()} == before
        assert fetch(client, alice, "root") == chain["root"]

    def test_moving_within_a_chain_without_a_cycle_is_fine(self, client, alice: Account, chain):
        reply = patch(client, alice, "leaf", {"parent": "root"})

        assert reply.status_code == 200, reply.text
        assert reply.json()["model"] == "gpt-4"
        assert reply.json()["tools"] == []

    def test_moving_a_subtree_past_the_depth_limit_is_422_and_nothing_changes(
        self, client, alice: Account
    ):
        """The moved agent's descendants count: 20 levels above plus those below is too many."""
        above, below = 20, MAX_DEPTH + 1 - 20
        create(client, alice, "a1", model="top")
        for level in range(2, above + 1):
            create(client, alice, f"a{level}", parent=f"a{level - 1}")
        create(client, alice, "b1")
        for level in range(2, below + 1):
            create(client, alice, f"b{level}", parent=f"b{level - 1}")

        reply = patch(client, alice, "b1", {"parent": "a20"})

        assert_problem(reply, 422, "parent_too_deep")
        assert Agent.get(Agent.name == "b1").parent_id is None
        reply = patch(client, alice, "b1", {"parent": "a19"})
        assert reply.status_code == 200, reply.text
        assert fetch(client, alice, f"b{below}")["model"] == "top"

    def test_parent_of_another_user_is_422_on_update(self, client, alice: Account, bob: Account):
        theirs = create(client, bob, "theirs")
        create(client, alice, "mine")

        reply = patch(client, alice, "mine", {"parent": theirs["id"]})

        assert_problem(reply, 422, "invalid_parent")
        assert Agent.get(Agent.name == "mine").parent_id is None


class TestListAgents:
    def test_lists_only_own_agents_in_creation_order(self, client, alice: Account, bob: Account):
        mine = [create(client, alice, name) for name in ("coder", "writer", "tester")]
        create(client, bob, "coder")
        create(client, bob, "spy")

        expected = {"agents": mine, "total": 3, "limit": 100, "offset": 0, "next": None}
        assert listing(client, alice) == expected

    def test_no_agents_is_an_empty_page(self, client, alice: Account):
        empty = {"agents": [], "total": 0, "limit": 100, "offset": 0, "next": None}
        assert listing(client, alice) == empty

    def test_children_are_listed_with_resolved_values(self, client, alice: Account):
        create(client, alice, "coder", model="gpt-4", tools=["filesystem_read"])
        create(client, alice, "kid", parent="coder", temperature=0.1)

        agents = listing(client, alice)["agents"]

        assert agents == [fetch(client, alice, "coder"), fetch(client, alice, "kid")]
        assert agents[1]["inherited"] == ["model", "tools"]

    def test_parent_filter_accepts_a_name_or_an_id(self, client, alice: Account):
        coder = create(client, alice, "coder")
        writer = create(client, alice, "writer")
        kids = [create(client, alice, f"kid{i}", parent="coder") for i in range(2)]
        create(client, alice, "stranger", parent="writer")
        create(client, alice, "grandkid", parent="kid0")

        for ref in ("coder", coder["id"]):
            page = listing(client, alice, f"?parent={ref}")
            assert (page["agents"], page["total"]) == (kids, 2)
        assert listing(client, alice, f"?parent={writer['id']}")["total"] == 1

    def test_parent_filter_on_unknown_or_foreign_agent_is_empty(
        self, client, alice: Account, bob: Account
    ):
        theirs = create(client, bob, "coder")
        create(client, bob, "kid", parent="coder")
        create(client, alice, "mine")

        for ref in ("ghost", "coder", theirs["id"]):
            page = listing(client, alice, f"?parent={ref}")
            assert (page["agents"], page["total"]) == ([], 0)

    def test_status_filter(self, client, alice: Account):
        active = create(client, alice, "on")
        disabled = create(client, alice, "off", status="disabled")

        assert listing(client, alice, "?status=active")["agents"] == [active]
        assert listing(client, alice, "?status=disabled")["agents"] == [disabled]
        page = listing(client, alice, "?status=disabled&parent=on")
        assert (page["agents"], page["total"]) == ([], 0)

    def test_pages_do_not_overlap_and_total_stays_the_same(self, client, alice: Account):
        names = [f"agent{i}" for i in range(5)]
        for name in names:
            create(client, alice, name)

        pages = [listing(client, alice, f"?limit=2&offset={offset}") for offset in (0, 2, 4)]

        assert [[a["name"] for a in page["agents"]] for page in pages] == [
            names[0:2],
            names[2:4],
            names[4:],
        ]
        assert [(p["total"], p["limit"], p["offset"]) for p in pages] == [
            (5, 2, 0),
            (5, 2, 2),
            (5, 2, 4),
        ]
        for offset in (5, 1000):
            assert listing(client, alice, f"?limit=2&offset={offset}") == {
                "agents": [],
                "total": 5,
                "limit": 2,
                "offset": offset,
                "next": None,
            }

    def test_next_links_walk_the_list_keeping_its_filters(self, client, alice: Account):
        for i in range(5):
            create(client, alice, f"t{i}", tags=["x"])
        create(client, alice, "untagged")
        names, url = [], f"{AGENTS}?tag=x&limit=2"
        while url:
            page = client.get(url, headers=alice.headers).json()
            assert page["total"] == 5
            names += [a["name"] for a in page["agents"]]
            url = page["next"]
            assert url is None or ("tag=x" in url and "limit=2" in url and "after=" in url)
        assert names == [f"t{i}" for i in range(5)]

    def test_a_cursor_not_given_out_by_the_api_is_a_422(self, client, alice: Account):
        reply = client.get(f"{AGENTS}?after=bm9wZQ", headers=alice.headers)
        problem = assert_problem(reply, 422, "invalid_cursor")
        assert list(problem["details"]) == ["query.after"]

    @pytest.mark.parametrize(
        ("query", "field"),
        [
            ("limit=0", "query.limit"),
            ("limit=1001", "query.limit"),
            ("limit=ten", "query.limit"),
            ("offset=-1", "query.offset"),
            ("status=paused", "query.status"),
            ("all=maybe", "query.all"),
            ("colour=red", "query.colour"),
        ],
    )
    def test_bad_query_parameter_is_422_naming_it(
        self, client, alice: Account, query: str, field: str
    ):
        reply = client.get(f"{AGENTS}?{query}", headers=alice.headers)

        problem = assert_problem(reply, 422, "validation_error")
        assert list(problem["details"]) == [field]

    def test_limit_bounds_are_inclusive(self, client, alice: Account):
        create(client, alice, "a")
        create(client, alice, "b")

        assert [a["name"] for a in listing(client, alice, "?limit=1")["agents"]] == ["a"]
        assert listing(client, alice, "?limit=1000")["limit"] == 1000

    def test_admin_with_all_sees_everyones_agents(
        self, client, alice: Account, bob: Account, admin: Account
    ):
        everyone = [create(client, alice, "coder"), create(client, bob, "coder")]
        own = create(client, admin, "ops")

        page = listing(client, admin, "?all=true")

        assert page == {
            "agents": [*everyone, own],
            "total": 3,
            "limit": 100,
            "offset": 0,
            "next": None,
        }
        assert listing(client, admin)["agents"] == [own]
        assert listing(client, admin, "?all=false")["agents"] == [own]

    def test_admin_listing_all_resolves_each_users_chains(
        self, client, alice: Account, bob: Account, admin: Account
    ):
        create(client, alice, "coder", model="alice-model")
        create(client, bob, "coder", model="bob-model")
        create(client, alice, "kid", parent="coder")
        create(client, bob, "kid", parent="coder")

        agents = listing(client, admin, "?all=true")["agents"]

        kids = {a["owner_id"]: a["model"] for a in agents if a["name"] == "kid"}
        assert kids == {alice.id: "alice-model", bob.id: "bob-model"}

    def test_admin_parent_filter_over_all_matches_that_name_for_every_user(
        self, client, alice: Account, bob: Account, admin: Account
    ):
        create(client, alice, "coder")
        create(client, bob, "coder")
        kids = [
            create(client, alice, "kid", parent="coder"),
            create(client, bob, "kid", parent="coder"),
        ]
        create(client, alice, "orphan")

        page = listing(client, admin, "?all=true&parent=coder")

        assert (page["agents"], page["total"]) == (kids, 2)
        assert listing(client, admin, "?parent=coder")["total"] == 0

    def test_non_admin_with_all_is_403(self, client, alice: Account, bob: Account):
        create(client, bob, "secret")

        reply = client.get(f"{AGENTS}?all=true", headers=alice.headers)

        assert_problem(reply, 403, "admin_required")
        assert listing(client, alice, "?all=false")["total"] == 0

    def test_premium_user_with_all_is_also_403(self, client):
        premium = register(client, "payer", role="premium")

        assert_problem(client.get(f"{AGENTS}?all=true", headers=premium.headers), 403)


class TestAgentTags:
    def test_tags_are_stored_returned_and_replaced_by_patch(self, client, alice: Account):
        body = create(client, alice, "support", tags=["production", "eu-west_1"])
        assert body["tags"] == ["production", "eu-west_1"]
        assert json.loads(Agent.get_by_id(body["id"]).tags) == ["production", "eu-west_1"]
        assert patch(client, alice, "support", {"tags": ["staging"]}).json()["tags"] == ["staging"]
        assert patch(client, alice, "support", {"tags": []}).json()["tags"] == []
        assert fetch(client, alice, "support")["tags"] == []

    def test_child_does_not_inherit_its_parents_tags(self, client, alice: Account):
        create(client, alice, "coder", tags=["production"], model="gpt-4")
        child = create(client, alice, "kid", parent="coder")
        assert child["tags"] == [] and "tags" not in child["inherited"]
        assert child["model"] == "gpt-4" and child["inherited"] == ["model"]

    def test_seed_004_tag_filter_lists_only_agents_with_that_tag(self, client, alice, bob):
        tagged = [
            create(client, alice, "a", tags=["production"]),
            create(client, alice, "b", tags=["staging", "production"]),
        ]
        create(client, alice, "c", tags=["production-like", "xproduction"])
        create(client, alice, "d", parent="a")  # tags are not inherited
        create(client, bob, "e", tags=["production"])
        page = listing(client, alice, "?limit=20&offset=0&tag=production")
        assert (page["agents"], page["total"]) == (tagged, 2)

    def test_underscore_in_a_tag_filter_is_not_a_wildcard(self, client, alice: Account):
        create(client, alice, "a", tags=["eu_1"])
        create(client, alice, "b", tags=["eux1"])
        assert [a["name"] for a in listing(client, alice, "?tag=eu_1")["agents"]] == ["a"]

    @pytest.mark.parametrize(
        "tags",
        [
            ["Production"],
            ["has space"],
            [""],
            ["x" * 33],
            ["dup", "dup"],
            [f"t{i}" for i in range(17)],
            "production",
        ],
    )
    def test_bad_tags_are_422_naming_the_field(self, client, alice: Account, tags):
        reply = client.post(AGENTS, json={"name": "a", "tags": tags}, headers=alice.headers)
        problem = assert_problem(reply, 422, "validation_error")
        assert any(field.startswith("body.tags") for field in problem["details"]), problem

    @pytest.mark.parametrize("tag", ["", "Production", "a%", "x" * 33])
    def test_bad_tag_filter_is_422(self, client, alice: Account, tag):
        reply = client.get(AGENTS, params={"tag": tag}, headers=alice.headers)
        assert_problem(reply, 422, "validation_error")
