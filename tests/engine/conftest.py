"""An account and an agent in a migrated database, and executors on it, for engine tests
without the HTTP app."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import peewee
import pytest

from cadre.app import engine_config
from cadre.db_calls import DEFAULT_TURN_SECONDS, DatabaseCalls
from cadre.engine.events import Event, EventBus
from cadre.engine.executor import Executor
from cadre.settings import Settings
from storage import agents
from storage.executions import create_execution
from storage.users import create_user


@pytest.fixture
def owner(database: peewee.Database) -> str:
    user = create_user(
        email="owner@example.com", username="owner", password_hash="x", full_name=None
    )
    return user.id


@pytest.fixture
def agent(owner: str) -> str:
    return agents.create_agent(owner, {"name": "echoer"}).id


@pytest.fixture
def execution_id(owner: str, agent: str) -> str:
    return queued_execution(owner, agent)


def queued_execution(owner: str, agent: str) -> str:
    """A queued execution of ``agent``'s, with no events yet."""
    return create_execution(
        owner=owner,
        agent_id=agent,
        agent_name="echoer",
        task="t",
        mode="safe",
        inputs={},
        config={},
        provider="echo",
        model="echo",
    ).id


class RecordingBus(EventBus):
    """An event bus that also keeps every event of every execution in one global order."""

    def __init__(self, db: DatabaseCalls | None = None) -> None:
        super().__init__(db=db)
        self.log: list[Event] = []

    def publish(self, execution_id: str, type_: str, **data: Any) -> Event:
        event = super().publish(execution_id, type_, **data)
        self.log.append(event)
        return event

    def of(self, execution_id: str) -> list[tuple[str, str | None]]:
        """``(type, status)`` of one execution's events, in order."""
        return [(e["type"], e.get("status")) for e in self.log if e["execution_id"] == execution_id]


@pytest.fixture
async def make_executor(
    settings: Settings, database: Any
) -> AsyncIterator[Callable[..., tuple[Executor, RecordingBus]]]:
    made: list[Executor] = []

    def make(
        turn_seconds: float = DEFAULT_TURN_SECONDS, **config: Any
    ) -> tuple[Executor, RecordingBus]:
        # Threads on PostgreSQL; on SQLite calls of one turn stop after ``turn_seconds``.
        calls = DatabaseCalls(settings.effective_database_url, turn_seconds)
        bus = RecordingBus(calls)
        executor = Executor(dataclasses.replace(engine_config(settings), **config), bus, calls)
        made.append(executor)
        return executor, bus

    yield make
    for executor in made:
        await executor.stop()
