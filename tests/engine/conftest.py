"""An account and an agent in a migrated database, for engine tests without the HTTP app."""

from __future__ import annotations

import peewee
import pytest

from storage import agents
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
