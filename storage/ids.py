"""Prefixed, sortable identifiers (``agent_01HQ…``) and UTC timestamps."""

from __future__ import annotations

from datetime import UTC, datetime

from ulid import ULID


def new_id(prefix: str) -> str:
    return f"{prefix}_{ULID()}"


def utcnow() -> datetime:
    """Naive UTC, as stored; ``aware`` turns it back into an aware value for replies."""
    return datetime.now(UTC).replace(tzinfo=None)


def aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
