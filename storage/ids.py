"""Prefixed, sortable identifiers (``agent_01HQ…``) and UTC timestamps."""

from __future__ import annotations

from datetime import UTC, datetime

from ulid import ULID


def new_id(prefix: str) -> str:
    return f"{prefix}_{ULID()}"


def utcnow() -> datetime:
    """Now, as an aware UTC datetime (``storage.fields.UTCDateTimeField`` stores it naive)."""
    return datetime.now(UTC)
