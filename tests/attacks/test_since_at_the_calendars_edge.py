"""Hardening 2: ``since`` at the ends of the calendar, and as a bare date."""

from __future__ import annotations

import httpx
import pytest

from tests.attacks.conftest import Attacked, assert_refused


def costs(server: Attacked, since: str) -> httpx.Response:
    return httpx.get(
        f"{server.url}/api/v1/costs", params={"since": since}, headers=server.headers()
    )


@pytest.mark.parametrize(
    "since",
    ["0001-01-01T00:00:00+00:01", "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-00:01"],
)
def test_since_outside_the_utc_calendar_is_422_not_500(server, since):
    problem = assert_refused(costs(server, since), 422, "validation_error")
    assert problem["details"] == {"query.since": f"'{since}' is out of range in UTC"}


@pytest.mark.parametrize(
    "since", ["2026-01-07", "0001-01-01", "9999-12-31", "2026-01-07T10:30:00Z"]
)
def test_since_as_a_date_or_a_date_time_is_accepted(server, since):
    reply = costs(server, since)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"costs": [], "total_cost": 0}


@pytest.mark.parametrize("since", ["yesterday", "2026-13-01", "2026-01-07T25:00:00Z", "7"])
def test_since_that_is_neither_is_422(server, since):
    problem = assert_refused(costs(server, since), 422, "validation_error")
    assert "query.since" in problem["details"]
