"""UTCDateTimeField: aware datetimes in Python, the same naive-UTC column values as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import peewee
import pytest

from storage.users import User, create_user


@pytest.fixture
def owner(database: peewee.Database) -> User:
    return create_user(email="u@example.com", username="u", password_hash="x", full_name=None)


def stored(user: User) -> object:
    """The raw column value, as the database holds it (no field conversion)."""
    return User.select(peewee.SQL("created_at")).where(User.id == user.id).scalar()


def test_rows_read_back_aware_in_utc(owner: User):
    assert User.get_by_id(owner.id).created_at.tzinfo is UTC


def test_an_aware_value_in_another_zone_is_stored_as_the_same_instant(owner: User):
    instant = datetime(2026, 1, 2, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    User.update(created_at=instant).where(User.id == owner.id).execute()

    assert User.get_by_id(owner.id).created_at == instant
    assert User.get_by_id(owner.id).created_at.hour == 10  # in UTC
    assert str(stored(owner)).startswith("2026-01-02 10:00:00")  # naive UTC, as before


def test_naive_values_are_taken_as_utc(owner: User):
    User.update(created_at=datetime(2026, 1, 2, 12, 0)).where(User.id == owner.id).execute()

    assert User.get_by_id(owner.id).created_at == datetime(2026, 1, 2, 12, 0, tzinfo=UTC)


def test_comparisons_in_queries_accept_aware_values(owner: User):
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert User.select().where(User.created_at < later).count() == 1
    assert User.select().where(User.created_at > later).count() == 0
