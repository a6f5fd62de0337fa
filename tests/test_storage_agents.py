"""storage.agents on a migrated database: resolution, parent rules, constraints, query counts."""

from __future__ import annotations

import peewee
import pytest
from playhouse.test_utils import count_queries

from cadre.errors import Conflict, ValidationFailed
from handlers import agents as agent_handlers
from models_gen.api import AgentList
from storage import agents
from storage.agents import DEFAULTS, Agent
from storage.users import create_user


def make_owner(username: str) -> str:
    return create_user(
        email=f"{username}@example.com", username=username, password_hash="x", full_name=None
    ).id


@pytest.fixture
def alice(client) -> str:
    """An owner in the database the app fixture migrated."""
    return make_owner("alice")


@pytest.fixture
def bob(client) -> str:
    return make_owner("bob")


def add(owner: str, name: str, **fields) -> Agent:
    return agents.create_agent(owner, {"name": name, **fields})


def three_levels(owner: str, suffix: str = "") -> tuple[Agent, Agent, Agent]:
    """root sets provider, model and instructions; mid overrides the model; leaf sets tools."""
    root = add(owner, f"root{suffix}", provider="openai", model="gpt-4", instructions="root")
    mid = add(owner, f"mid{suffix}", parent=root.id, model="gpt-4o", temperature=0.1)
    leaf = add(owner, f"leaf{suffix}", parent=mid.id, tools=["calculator"])
    return root, mid, leaf


def fresh(agent: Agent) -> Agent:
    """The agent as the database holds it now, with nothing cached."""
    return Agent.get_by_id(agent.id)


class TestResolve:
    def test_values_come_from_the_nearest_ancestor_that_sets_them(self, alice: str):
        leaf = three_levels(alice)[2]

        [resolved] = agents.resolve([fresh(leaf)])

        assert resolved.row["id"] == leaf.id
        assert resolved.parent_name == "mid"
        assert resolved.values == {
            "provider": "openai",
            "model": "gpt-4o",
            "temperature": 0.1,
            "instructions": "root",
            "tools": ["calculator"],
        }
        assert resolved.inherited == ("provider", "model", "temperature", "instructions")

    def test_unset_everywhere_takes_defaults_and_is_not_inherited(self, alice: str):
        root = add(alice, "root")
        kid = add(alice, "kid", parent="root")

        resolved = agents.resolve([fresh(root), fresh(kid)])

        assert [(r.values, r.inherited, r.parent_name) for r in resolved] == [
            (DEFAULTS, (), None),
            (DEFAULTS, (), "root"),
        ]

    def test_a_batch_keeps_its_order_and_resolves_members_that_are_each_others_ancestors(
        self, alice: str
    ):
        root, mid, leaf = three_levels(alice)
        other = add(alice, "other", parent=root.id)

        resolved = agents.resolve([fresh(leaf), fresh(other), fresh(root), fresh(mid)])

        assert [r.row["name"] for r in resolved] == ["leaf", "other", "root", "mid"]
        assert [r.values["model"] for r in resolved] == ["gpt-4o", "gpt-4", "gpt-4", "gpt-4o"]
        assert [r.parent_name for r in resolved] == ["mid", "root", None, "root"]
        assert [r.inherited for r in resolved] == [
            ("provider", "model", "temperature", "instructions"),
            ("provider", "model", "instructions"),
            (),
            ("provider", "instructions"),
        ]

    def test_stored_falsy_values_are_own_values(self, alice: str):
        add(alice, "root", temperature=1.0, instructions="root", tools=["calculator"])
        kid = add(alice, "kid", parent="root", temperature=0, instructions="", tools=[])

        [resolved] = agents.resolve([fresh(kid)])

        assert resolved.values["temperature"] == 0
        assert (resolved.values["instructions"], resolved.values["tools"]) == ("", [])
        assert resolved.inherited == ()

    @pytest.mark.parametrize(("which", "queries"), [("root", 0), ("mid", 1), ("leaf", 2)])
    def test_reads_ancestors_with_one_query_per_generation(
        self, alice: str, which: str, queries: int
    ):
        chain = dict(zip(("root", "mid", "leaf"), three_levels(alice), strict=True))
        agent = fresh(chain[which])

        with count_queries() as counter:
            agents.resolve([agent])

        assert counter.count == queries

    def test_nothing_to_resolve_runs_no_query(self, client):
        with count_queries() as counter:
            assert agents.resolve([]) == []
        assert counter.count == 0


class TestPagination:
    def test_a_partial_page_gives_the_total_without_a_count(self, alice: str):
        for i in range(5):
            add(alice, f"a{i}")
        with count_queries() as counter:
            rows, total, _ = agents.list_agents(alice, parent=None, status=None, limit=3, offset=3)
        assert ([r["name"] for r in rows], total, counter.count) == (["a3", "a4"], 5, 1)

    @pytest.mark.parametrize(("limit", "offset", "queries"), [(5, 0, 1), (2, 2, 2), (3, 9, 2)])
    def test_only_pages_short_of_the_end_or_past_it_count(self, alice: str, limit, offset, queries):
        """One row more than the page is read: a page that reaches the end needs no count.
        Unfiltered, the count is the kept one (a primary-key read), not a scan."""
        for i in range(5):
            add(alice, f"a{i}")
        with count_queries() as counter:
            rows, total, _ = agents.list_agents(
                alice, parent=None, status=None, limit=limit, offset=offset
            )
        assert (total, counter.count) == (5, queries)
        assert len(rows) == max(0, min(limit, 5 - offset))

    def test_an_empty_list_is_one_query(self, alice: str):
        with count_queries() as counter:
            assert agents.list_agents(alice, parent=None, status=None, limit=3, offset=0) == (
                [],
                0,
                None,
            )
        assert counter.count == 1


class TestCursor:
    def test_cursor_pages_walk_the_whole_list_once_in_order(self, alice: str):
        names = [add(alice, f"a{i:02}").name for i in range(7)]
        seen, after, totals = [], None, set()
        while True:
            rows, total, after = agents.list_agents(
                alice, parent=None, status=None, limit=3, offset=0, after=after
            )
            seen += [r["name"] for r in rows]
            totals.add(total)
            if after is None:
                break
        assert seen == names and totals == {7}

    def test_kept_count_follows_creates_and_deletes(self, alice: str, bob: str):
        for i in range(4):
            add(alice, f"a{i}")
        add(bob, "b")
        agents.delete_agent(agents.get_agent("a0", alice))
        assert agents.list_agents(alice, parent=None, status=None, limit=1, offset=0).total == 3

    def test_a_forged_cursor_is_a_422_naming_the_parameter(self, alice: str):
        with pytest.raises(ValidationFailed) as caught:
            agents.list_agents(alice, parent=None, status=None, limit=1, offset=0, after="bm9wZQ")
        assert caught.value.details == {"query.after": "not a cursor from a page's next link"}


class TestListQueryCount:
    """A page costs 1 select + one per ancestor generation whatever its size, plus a count
    when the page is full (a partial page ends the list, so it gives the total itself)."""

    @staticmethod
    def leaves_page(owner: str, chains: int) -> dict:
        """3-level chains made a generation at a time, so the leaves are the last page."""
        for i in range(chains):
            add(owner, f"root-{i}", provider="openai", model="gpt-4", instructions="root")
        for i in range(chains):
            add(owner, f"mid-{i}", parent=f"root-{i}", model="gpt-4o", temperature=0.1)
        for i in range(chains):
            add(owner, f"leaf-{i}", parent=f"mid-{i}", tools=["calculator"])
        return {"limit": chains, "offset": 2 * chains}

    @pytest.mark.parametrize("chains", [5, 50])
    def test_storage_listing_and_resolving_a_page_of_leaves(self, alice: str, chains: int):
        page = self.leaves_page(alice, chains)

        with count_queries() as counter:
            rows, total, _ = agents.list_agents(alice, parent=None, status=None, **page)
            resolved = agents.resolve_rows(rows)

        assert (len(rows), total) == (chains, 3 * chains)
        assert {r.row["name"] for r in resolved} == {f"leaf-{i}" for i in range(chains)}
        assert {r.values["model"] for r in resolved} == {"gpt-4o"}
        assert counter.count == 1 + 2  # the last page: no count

    @pytest.mark.parametrize("chains", [5, 50])
    def test_list_handler_adds_no_query_per_agent(self, alice: str, chains: int):
        page = self.leaves_page(alice, chains)

        with count_queries() as counter:
            reply, status = agent_handlers.list_agents(
                user=alice, token_info={"role": "user"}, **page
            )

        assert status == 200
        body = AgentList.model_validate_json(reply)
        assert (len(body.agents), body.total) == (chains, 3 * chains)
        assert {a.parent for a in body.agents} == {f"mid-{i}" for i in range(chains)}
        assert {a.instructions for a in body.agents} == {"root"}
        assert counter.count == 1 + 2

    def test_parent_filter_costs_no_extra_query(self, alice: str):
        for i in range(10):
            three_levels(alice, f"-{i}")

        with count_queries() as counter:
            rows, total, _ = agents.list_agents(
                alice, parent="mid-3", status=None, limit=100, offset=0
            )
            agents.resolve_rows(rows)

        assert ([r["name"] for r in rows], total) == (["leaf-3"], 1)
        assert counter.count == 1 + 2  # a partial page: no count query


class TestParentRules:
    def test_a_cycle_is_refused_and_the_row_is_untouched(self, alice: str):
        root = three_levels(alice)[0]
        before = fresh(root).__data__

        with pytest.raises(ValidationFailed) as caught:
            agents.update_agent(fresh(root), {"parent": "leaf", "model": "changed"})

        assert caught.value.error == "parent_cycle"
        assert fresh(root).__data__ == before

    def test_self_parent_is_a_cycle(self, alice: str):
        root = add(alice, "root")

        with pytest.raises(ValidationFailed) as caught:
            agents.update_agent(fresh(root), {"parent": root.id})

        assert caught.value.error == "parent_cycle"
        assert fresh(root).parent_id is None

    def test_parent_is_looked_up_among_the_owners_agents_only(self, alice: str, bob: str):
        theirs = add(bob, "coder")

        for ref in ("coder", theirs.id):
            with pytest.raises(ValidationFailed) as caught:
                add(alice, "kid", parent=ref)
            assert caught.value.error == "invalid_parent"
        assert Agent.select().where(Agent.owner == alice).count() == 0

    def test_name_conflict_is_per_owner(self, alice: str, bob: str):
        add(alice, "coder")
        add(bob, "coder")

        with pytest.raises(Conflict) as caught:
            add(alice, "coder")

        assert caught.value.error == "agent_name_taken"

    def test_losing_a_race_for_a_name_is_a_conflict_not_a_crash(
        self, alice: str, monkeypatch: pytest.MonkeyPatch
    ):
        """Another request takes the name between the check and the write."""
        add(alice, "taken")
        mover = add(alice, "mover")
        monkeypatch.setattr(peewee.ModelSelect, "exists", lambda self, database=None: False)

        for attempt in (
            lambda: add(alice, "taken"),
            lambda: agents.update_agent(mover, {"name": "taken"}),
        ):
            with pytest.raises(Conflict) as caught:
                attempt()
            assert caught.value.error == "agent_name_taken"
        assert sorted(a.name for a in Agent.select()) == ["mover", "taken"]

    def test_database_enforces_unique_names_per_owner(self, alice: str, bob: str):
        Agent.create(id="agent_a", owner=alice, name="coder")
        Agent.create(id="agent_b", owner=bob, name="coder")

        with pytest.raises(peewee.IntegrityError):
            Agent.create(id="agent_c", owner=alice, name="coder")

    def test_database_refuses_deleting_an_agent_with_children(self, alice: str):
        mid = three_levels(alice)[1]

        with pytest.raises(peewee.IntegrityError):
            fresh(mid).delete_instance()

        assert Agent.select().count() == 3
