"""The two query helpers every list endpoint uses: ownership filtering and pagination."""

from __future__ import annotations

from typing import Any

import peewee


def owned(
    query: peewee.ModelSelect, model: type[peewee.Model], owner_id: str | None
) -> peewee.ModelSelect:
    """Restrict ``query`` to ``owner_id``'s rows; ``None`` (an admin asking for all) keeps all."""
    return query if owner_id is None else query.where(model.owner == owner_id)


def paginate(query: peewee.ModelSelect, limit: int, offset: int) -> tuple[list[Any], int]:
    """One page of ``query`` and the total it would have without paging.

    A page that is neither full nor empty ends the list, so its length gives the total
    and the count query is skipped (the usual case for short lists).
    """
    # Iterate rather than list(): list() asks peewee for len(), which runs the query apart.
    rows = [row for row in query.limit(limit).offset(offset)]
    if 0 < len(rows) < limit or (offset == 0 and not rows):
        return rows, offset + len(rows)
    return rows, query.order_by().count()
