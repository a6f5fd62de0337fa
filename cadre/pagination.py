"""A list reply's ``next`` link: the same list, from the row after this page's last."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from storage.queries import Page


def next_link(path: str, page: Page, limit: int, **filters: Any) -> str | None:
    """``path?…&limit=…&after=…`` keeping the list's filters (``None`` ones left out);
    ``None`` when ``page`` is the last."""
    if page.after is None:
        return None
    query = {
        name.rstrip("_"): ("true" if value is True else "false" if value is False else value)
        for name, value in filters.items()
        if value is not None
    }
    query.update(limit=limit, after=page.after)
    return f"{path}?{urlencode(query)}"
