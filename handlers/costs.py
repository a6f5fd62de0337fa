"""Cost records and summaries: the caller's own, or everyone's for admins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cadre.auth import owner_scope
from cadre.connexion.binding import Reply
from cadre.errors import ValidationFailed
from cadre.replies import list_reply
from models_gen.api import CostList, CostSummary
from storage import costs

PERIODS = {"day": timedelta(days=1), "week": timedelta(weeks=1), "month": timedelta(days=30)}


def _parse_instant(value: str) -> datetime:
    """An ISO 8601 instant as naive UTC (as stored); a bare date means its midnight UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValidationFailed(
            "'since' must be an ISO 8601 date or date-time.",
            details={"query.since": f"'{value}' is not an ISO 8601 date-time"},
        ) from exc
    try:
        return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed
    except OverflowError as exc:  # 0001-01-01T00:00+00:01 is before the first UTC instant
        raise ValidationFailed(
            "'since' lies outside the years 1 to 9999 once converted to UTC.",
            details={"query.since": f"'{value}' is out of range in UTC"},
        ) from exc


def _cost_fields(record: costs.CostRecord) -> dict[str, Any]:
    return {**record.__data__, "total_tokens": record.total_tokens}


def list_costs(
    user: str,
    token_info: dict,
    limit: int,
    since: str | None = None,
    agent_id: str | None = None,
    all_: bool = False,
) -> Reply:
    owner = owner_scope(user, token_info, all_)
    since_utc = None if since is None else _parse_instant(since)
    rows, total = costs.list_costs(owner, since=since_utc, agent_ref=agent_id, limit=limit)
    return list_reply(CostList, map(_cost_fields, rows), total_cost=total)


def get_cost_summary(user: str, token_info: dict, period: str = "day", all_: bool = False) -> Reply:
    owner = owner_scope(user, token_info, all_)
    since = datetime.now(UTC).replace(tzinfo=None) - PERIODS[period]
    summary = CostSummary(period=period, **costs.summarize(owner, since))
    return summary, 200
