"""Versioned migrations: a fresh database and an upgraded one end identical to the models."""

from __future__ import annotations

import peewee
import pytest
from playhouse.migrations import Runner
from playhouse.schema_diff import diff_models

from storage import db
from storage.agents import Agent
from storage.checkpoints import Checkpoint
from storage.costs import CostRecord
from storage.counts import RowCount
from storage.executions import (
    Execution,
    ExecutionEvent,
    events_after,
    last_seq,
)
from storage.jobs import Allocation, Job, QuotaUsage, Worker
from storage.sessions import Session, SessionMessage, SessionTemplate, SessionToolCall
from storage.users import RefreshToken, User
from tests.conftest import TEST_DATABASE_URL

MODELS = [
    User,
    RefreshToken,
    Agent,
    Execution,
    ExecutionEvent,
    CostRecord,
    SessionTemplate,
    Session,
    SessionMessage,
    SessionToolCall,
    Checkpoint,
    Job,
    Worker,
    QuotaUsage,
    Allocation,
    RowCount,
]


def _database(tmp_path) -> peewee.Database:
    if TEST_DATABASE_URL:
        from scripts.live_server import reset_postgres

        reset_postgres(TEST_DATABASE_URL)
        return db.open_database(TEST_DATABASE_URL)
    return db.open_database(f"sqlite:///{tmp_path / 'migrations.db'}")


def _columns(database: peewee.Database) -> dict[str, list[str]]:
    return {
        table: sorted(c.name for c in database.get_columns(table))
        for table in sorted(database.get_tables())
    }


def test_fresh_database_matches_the_models(tmp_path):
    database = _database(tmp_path)
    applied = db.migrate(database)
    assert applied == sorted(applied) and len(applied) >= 2
    assert not diff_models(database, MODELS)
    assert db.migrate(database) == []  # idempotent
    database.close()


def test_upgraded_database_keeps_its_rows_and_matches_a_fresh_one(tmp_path):
    fresh = _database(tmp_path)
    db.migrate(fresh)
    fresh_columns = _columns(fresh)
    fresh.close()

    (tmp_path / "old").mkdir()
    upgraded = _database(tmp_path / "old")
    runner = Runner(upgraded, directory=str(db.MIGRATIONS_DIR))
    runner.up(target=runner.migrations()[0].name)
    User.create(id="usr_1", email="a@b.co", username="a", password_hash="x")
    db.migrate(upgraded)
    assert not diff_models(upgraded, MODELS)
    assert _columns(upgraded) == fresh_columns
    assert User.get_by_id("usr_1").email == "a@b.co"
    upgraded.close()


def test_cli_migrate_reports_what_it_applied(tmp_path, capsys, monkeypatch):
    from cadre.cli import main

    monkeypatch.setenv("CADRE_DATA_DIR", str(tmp_path / "cli"))
    if TEST_DATABASE_URL:
        from scripts.live_server import reset_postgres

        reset_postgres(TEST_DATABASE_URL)
        monkeypatch.setenv("CADRE_DATABASE_URL", TEST_DATABASE_URL)
    assert main(["migrate"]) == 0
    assert "applied: 0001_accounts_and_agents" in capsys.readouterr().out
    assert main(["migrate"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_upgrade_counts_existing_sessions_and_sums_existing_costs(tmp_path):
    from storage import counts

    database = _database(tmp_path)
    runner = Runner(database, directory=str(db.MIGRATIONS_DIR))
    runner.up(target="0009_one_event_index")
    for user in ("usr_1", "usr_2"):
        User.create(id=user, email=f"{user}@b.co", username=user, password_hash="x")
    for n in range(3):
        Session.create(
            id=f"sess_{n}", owner="usr_1", name="s", sdk_options={}, working_directory_path="/w"
        )
    for n, usd in enumerate((0.25, 0.5, 0.125)):
        CostRecord.create(
            id=f"cost_{n}",
            owner="usr_1" if n else "usr_2",
            agent_id="agent_1",
            agent_name="a",
            execution_id="exec_1",
            provider="echo",
            model="echo",
            prompt_tokens=1,
            completion_tokens=1,
            cost_usd=usd,
            priced=True,
        )
    db.migrate(database)
    assert (counts.count("usr_1", "session"), counts.count("usr_2", "session")) == (3, 0)
    assert (counts.count("usr_1", "cost"), counts.amount("usr_1", "cost")) == (2, 0.625)
    assert (counts.count("usr_2", "cost"), counts.amount("usr_2", "cost")) == (1, 0.25)
    database.close()


def _execution(execution_id: str, idempotency_key: str | None = None) -> None:
    Execution.create(
        id=execution_id,
        owner="usr_1",
        agent_id="agent_1",
        agent_name="a",
        task="t",
        mode="safe",
        inputs={},
        config={},
        provider="echo",
        model="echo",
        idempotency_key=idempotency_key,
    )


def test_upgrade_keys_events_by_execution_and_seq_and_keeps_them(tmp_path):
    database = _database(tmp_path)
    runner = Runner(database, directory=str(db.MIGRATIONS_DIR))
    runner.up(target="0012_no_agent_or_created_at_indexes")
    User.create(id="usr_1", email="a@b.co", username="a", password_hash="x")
    _execution("exec_1", idempotency_key="k")
    _execution("exec_2")
    for execution_id, seq in (("exec_1", 2), ("exec_2", 1), ("exec_1", 1)):
        database.execute_sql(
            'INSERT INTO "execution_event" ("execution_id", "seq", "type", "data", "created_at")'
            f" VALUES ('{execution_id}', {seq}, 'token', '{{\"seq\": {seq}}}', '2026-01-01')"
        )

    db.migrate(database)

    assert "id" not in [column.name for column in database.get_columns("execution_event")]
    assert [row.data for row in events_after("exec_1", 0, 10)] == [{"seq": 1}, {"seq": 2}]
    assert last_seq("exec_2") == 1
    with pytest.raises(peewee.IntegrityError), database.atomic():
        ExecutionEvent.insert(execution="exec_1", seq=2, type="token", data={}).execute()
    _execution("exec_3")  # executions without a key are not in the key's index
    with pytest.raises(peewee.IntegrityError), database.atomic():
        _execution("exec_4", idempotency_key="k")  # and a key is still unique per owner
    database.close()


def test_an_execution_found_by_its_idempotency_key_uses_the_partial_index(tmp_path):
    if TEST_DATABASE_URL:
        pytest.skip("SQLite's plan: PostgreSQL plans a table this small with a scan")
    database = _database(tmp_path)
    db.migrate(database)
    query = Execution.select().where(
        (Execution.owner == "usr_1") & (Execution.idempotency_key == "k")
    )
    sql, params = query.sql()
    plan = " ".join(row[-1] for row in database.execute_sql(f"EXPLAIN QUERY PLAN {sql}", params))
    assert "USING INDEX execution_owner_id_idempotency_key" in plan
    database.close()
