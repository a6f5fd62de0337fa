"""UTCDateTimeField: aware datetimes in Python, the same naive-UTC column values as before.
JSONField: compact JSON text, whatever orjson refuses written by the standard library.
Event timestamps: RFC 3339 UTC text."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

import peewee
import pytest

from storage.fields import JSONField
from storage.ids import utcnow_text
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


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 1, 2, 10, 0, 0, 123456, tzinfo=UTC),
        datetime(2026, 1, 2, 10, 0, tzinfo=UTC),  # no fraction, as ``isoformat`` writes it
        datetime(2026, 1, 2, 12, 0, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 1, 2, 10, 0),  # naive: UTC
        "2026-01-02 10:00:00",  # text: parsed, then written the same way
    ],
)
def test_timestamps_are_written_as_the_text_the_sqlite_driver_made_of_them(owner, value):
    text = User.created_at.db_value(value)
    micro = ".123456" if isinstance(value, datetime) and value.microsecond else ""
    assert text == f"2026-01-02 10:00:00{micro}"  # ``datetime.isoformat(" ")``, naive UTC
    User.update(created_at=value).where(User.id == owner.id).execute()
    assert User.get_by_id(owner.id).created_at == datetime.fromisoformat(text + "+00:00")


@pytest.mark.parametrize(
    "value",
    [
        {"task": "café ☕", "n": 3, "ratio": 0.25, "ok": True, "none": None, "list": [1, "a"]},
        {"big": 2**70, "negative": -(2**64)},  # beyond orjson's 64 bits
        {1: "a key that is not a string"},  # read back as "1", as json.dumps writes it
        {"path": "bad-\udcff-bytes"},  # a lone surrogate, from surrogate-escaped bytes
    ],
)
def test_json_values_read_back_as_json_dumps_would_give_them(value: object):
    field = JSONField()
    text = field.db_value(value)

    assert field.python_value(text) == json.loads(json.dumps(value))


def test_json_nan_and_infinity_are_stored_as_null_which_is_valid_json():
    text = JSONField().db_value({"score": float("nan"), "limit": float("inf")})

    assert json.loads(text) == {"score": None, "limit": None}


def test_utc_values_of_any_second_are_written_as_isoformat_writes_them():
    start = datetime(2026, 12, 31, 23, 59, 58, 999_999, tzinfo=UTC)
    for step in range(0, 3_000_001, 250_001):  # across seconds, a day, a year
        value = start + timedelta(microseconds=step)
        expected = value.replace(tzinfo=None).isoformat(" ")
        assert User.created_at.db_value(value) == expected


def test_event_timestamps_are_now_in_rfc3339_utc_with_microseconds():
    before = datetime.now(UTC)
    text = utcnow_text()
    after = datetime.now(UTC)

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", text)
    assert before <= datetime.fromisoformat(text.replace("Z", "+00:00")) <= after
