"""A migrated database, an account and an agent, for engine tests without the HTTP app."""

from __future__ import annotations

from collections.abc import Iterator

import peewee
import pytest

from cadre.settings import Settings
from scripts.live_server import reset_postgres
from storage import agents, db
from storage.users import create_user
from tests.conftest import TEST_DATABASE_URL


@pytest.fixture
def database(settings: Settings) -> Iterator[peewee.Database]:
    if TEST_DATABASE_URL:
        reset_postgres(TEST_DATABASE_URL)
    opened = db.open_database(settings.effective_database_url)
    db.migrate(opened)
    yield opened
    if not opened.is_closed():
        opened.close()


@pytest.fixture
def owner(database: peewee.Database) -> str:
    user = create_user(
        email="owner@example.com", username="owner", password_hash="x", full_name=None
    )
    return user.id


@pytest.fixture
def agent(owner: str) -> str:
    return agents.create_agent(owner, {"name": "echoer"}).id
