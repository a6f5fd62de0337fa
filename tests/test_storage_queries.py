"""storage.queries.fetch: the raw path every list takes builds what Peewee would build."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import peewee
import pytest

from storage import agents, costs, executions, sessions
from storage.agents import Agent
from storage.costs import CostRecord
from storage.executions import Execution
from storage.queries import compiled, fetch, fetch_rows, paginate
from storage.sessions import SessionTemplate
from storage.users import User, create_user


@pytest.fixture
def owner(database: peewee.Database) -> str:
    return create_user(email="o@example.com", username="o", password_hash="x", full_name=None).id


@pytest.fixture
def filled(owner: str) -> str:
    """Rows with every kind of column a list converts: timestamps, JSON, booleans, floats."""
    root = agents.create_agent(owner, {"name": "root", "tools": ["calculator"], "tags": ["a"]})
    agents.create_agent(owner, {"name": "leaf", "parent": root.id, "temperature": 0.25})
    for priced in (True, False):
        costs.record_cost(
            owner=owner,
            agent_id=root.id,
            agent_name="root",
            execution_id="exec_1",
            provider="echo",
            model="echo",
            prompt_tokens=3,
            completion_tokens=4,
            cost_usd=0.5,
            priced=priced,
        )
    sessions.create_template(owner, name="t", sdk_options={"k": [1, None]}, is_public=True)
    return owner


def peewee_rows(query: peewee.ModelSelect) -> list[dict]:
    return [row.__data__ for row in query]


@pytest.mark.parametrize("model", [Agent, CostRecord, SessionTemplate])
def test_raw_rows_are_the_models_peewee_builds(filled: str, model: type[peewee.Model]):
    query = model.select().where(model.owner == filled).order_by(model.id)

    rows = fetch(query)

    assert [row.__data__ for row in rows] == peewee_rows(query)
    assert all(type(row) is model for row in rows)


@pytest.mark.parametrize("model", [Agent, CostRecord, SessionTemplate])
def test_plain_rows_are_the_values_peewee_models_hold(filled: str, model: type[peewee.Model]):
    query = model.select().where(model.owner == filled).order_by(model.id)

    assert fetch_rows(query) == peewee_rows(query)


def test_plain_rows_of_a_join_are_the_values_of_its_own_model(filled: str):
    joined = Agent.select().join(User).where(User.id == filled).order_by(Agent.id)

    assert fetch_rows(joined) == peewee_rows(joined)


def test_a_plain_page_walks_the_list_as_a_page_of_models_does(filled: str):
    query = Agent.select().where(Agent.owner == filled)
    keys = (Agent.created_at, Agent.id)
    plain, models = paginate(query, keys, limit=1, plain=True), paginate(query, keys, limit=1)

    assert plain.rows == [row.__data__ for row in models.rows]
    assert (plain.total, plain.after) == (models.total, models.after) and plain.after
    last = paginate(query, keys, limit=1, after=plain.after, plain=True)
    assert [row["name"] for row in last.rows] == ["leaf"] and last.after is None


def test_the_compiled_sql_is_what_peewee_compiles_even_with_a_subquery(filled: str):
    parents = Agent.alias()
    query = Agent.select().where(
        Agent.parent.in_(parents.select(parents.id).where(parents.name == "root"))
    )

    assert compiled(query) == query.sql()
    assert [a.name for a in fetch(query)] == ["leaf"]


@pytest.mark.parametrize(
    "shape",
    [
        lambda q: q,
        lambda q: q.where(Agent.owner == "someone"),
        lambda q: q.where(Agent.status == "active").order_by(Agent.created_at, Agent.id),
        lambda q: q.order_by(Agent.created_at.desc(), Agent.id.desc()).limit(5).offset(10),
        lambda q: q.where(peewee.Tuple(Agent.created_at, Agent.id) > ("2026", "a")).limit(3),
        lambda q: q.where((Agent.name == "x") | (Agent.tags.contains("a"))).order_by(Agent.id),
    ],
)
def test_every_page_shape_compiles_to_the_sql_peewee_compiles(filled: str, shape):
    query = shape(Agent.select())

    assert compiled(query) == query.sql()
    # and the same shape with other values reuses the cached text with their parameters
    other = shape(Agent.select().where(Agent.owner == filled))
    assert compiled(other) == other.sql()


def test_a_join_a_partial_column_list_or_an_expression_order_goes_through_peewee(filled: str):
    joined = Agent.select().join(User).where(User.id == filled)
    partial = Agent.select(Agent.id, Agent.name)
    by_expression = Agent.select().order_by(peewee.fn.lower(Agent.name).desc())

    assert [compiled(q) for q in (joined, partial, by_expression)] == [None, None, None]
    assert sorted(a.name for a in fetch(joined)) == ["leaf", "root"]
    assert {a.name for a in fetch(partial)} == {"leaf", "root"}
    assert [a.name for a in fetch(by_expression)] == ["root", "leaf"]


def test_background_scans_stay_on_the_status_index_once_sqlite_has_statistics(
    filled: str, database: peewee.Database, caplog: pytest.LogCaptureFixture
):
    """A million finished runs and a few unfinished ones: after ``ANALYZE`` SQLite plans a
    bound ``IN`` list by the status column's average and scanned every row each beat."""
    if not isinstance(database, peewee.SqliteDatabase):
        pytest.skip("SQLite's planner; PostgreSQL keeps per-value statistics")
    finished = {
        **{"owner": filled, "agent_id": "agent_x", "agent_name": "x", "task": "t", "mode": "safe"},
        **{"inputs": {}, "config": {}, "provider": "echo", "model": "echo"},
    }
    Execution.insert_many(
        [{**finished, "id": f"exec_{i:05d}", "status": "completed"} for i in range(3000)]
    ).execute()
    Execution.insert(**finished, id="exec_running", status="running").execute()
    database.execute_sql("ANALYZE")
    caplog.set_level(logging.DEBUG, logger="peewee")

    stale = executions.stale_unfinished(datetime.now(UTC))
    executions.awaiting_of_disabled()

    assert [run.id for run in stale] == ["exec_running"]
    scans = [record.msg for record in caplog.records if isinstance(record.msg, tuple)]
    assert len(scans) == 2
    for sql, params in scans:
        plan = database.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()
        steps = [step[-1] for step in plan]
        assert "SCAN t1" not in steps and any("execution_status" in s for s in steps), steps
