"""Lists at scale: the same list requests with a small and a large table, as ratios.

    python scripts/bench_lists.py [--small 1000] [--large 100000] [--requests 200]
    python scripts/bench_lists.py --rows 1000000   # opt-in: a third, much larger size

For each size, a fresh SQLite data directory gets one user owning that many agents,
executions, sessions and cost records (bulk-inserted by SQLite itself, one
``INSERT … SELECT`` over a counter per table, with the per-owner counts the API keeps;
the seeding time is printed) and its own ``cadre serve`` (one worker, pinned to CPU 0
when taskset exists). The sizes' servers then take turns answering, one request at a
time, ``--requests`` of each (after five warm-up rounds):

* ``GET /api/v1/agents`` (the first page of 100, with its exact ``total``);
* the last page of agents by ``offset``, and the same page by cursor (``after``);
* ``GET /api/v1/executions`` and ``GET /api/v1/sessions`` (first pages, newest first);
* ``GET /api/v1/costs`` (the newest 100 records and the total cost of all of them).

It prints p50/p99 per request and size, and each larger size's p99 over the small one's
(the issue's goal: at most 1.5x). Nothing is asserted: on a shared machine a ratio
measured in one run is what counts.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import peewee

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cadre.settings import Settings  # noqa: E402
from scripts.bench import (  # noqa: E402
    USERNAME,
    auth,
    percentile,
    prepare_direct_login,
    serving,
)
from storage import db  # noqa: E402
from storage.agents import Agent  # noqa: E402
from storage.costs import CostRecord  # noqa: E402
from storage.counts import RowCount  # noqa: E402
from storage.executions import Execution  # noqa: E402
from storage.queries import _encode  # noqa: E402
from storage.sessions import Session  # noqa: E402
from storage.users import User  # noqa: E402

PAGE = 100
START = datetime(2026, 1, 1, tzinfo=UTC)
# Row i's time: START plus i seconds, in the naive-UTC text the columns hold.
AT = "datetime('2026-01-01 00:00:00', '+' || i || ' seconds')"


def bulk_insert(
    database: peewee.Database, table: type[db.BaseModel], rows: int, **given: Any
) -> None:
    """``rows`` rows of ``table`` made by SQLite in one statement: ``given`` values are
    SQL expressions of the row number ``i`` when ``peewee.SQL``, else fixed values; every
    other column gets its field's default. No Python runs per row."""
    columns, values, params = [], [], []
    for field in table._meta.sorted_fields:
        columns.append(f'"{field.column_name}"')
        value = given.get(field.name, field.default() if callable(field.default) else field.default)
        if isinstance(value, peewee.SQL):
            values.append(value.sql)
        else:
            values.append("?")
            params.append(field.db_value(value))
    database.execute_sql(
        f"WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {rows - 1}) "
        f'INSERT INTO "{table._meta.table_name}" ({", ".join(columns)}) '
        f"SELECT {', '.join(values)} FROM n",
        params,
    )


def numbered(prefix: str, width: int = 26) -> peewee.SQL:
    return peewee.SQL(f"printf('{prefix}%0{width}d', i)")


def fill(data_dir: Path, rows: int) -> tuple[str, str]:
    """``rows`` of each listed kind for the bench user; the last page's cursor, a token."""
    token = prepare_direct_login(data_dir)
    settings = Settings(_env_file=None, data_dir=data_dir, secret_key="x" * 64)
    database = db.open_database(settings.effective_database_url)
    owner = User.get(User.username == USERNAME).id
    began = time.perf_counter()
    at = peewee.SQL(AT)
    with database.atomic():
        bulk_insert(
            database,
            Agent,
            rows,
            id=numbered("agent_"),
            owner=owner,
            name=numbered("agent-", 7),
            provider="echo",
            model="echo",
            created_at=at,
            updated_at=at,
        )
        common = {"owner": owner, "agent_id": "agent_0", "provider": "echo", "model": "echo"}
        bulk_insert(
            database,
            Execution,
            rows,
            **common,
            id=numbered("exec_"),
            agent_name="agent-0000000",
            task="bench",
            mode="safe",
            inputs={},
            config={},
            status="completed",
            created_at=at,
        )
        bulk_insert(
            database,
            Session,
            rows,
            owner=owner,
            id=numbered("sess_"),
            name=numbered("session-", 7),
            sdk_options={"allowed_tools": [], "permission_mode": "default"},
            status="completed",
            working_directory_path="/tmp/bench",
            created_at=at,
        )
        bulk_insert(
            database,
            CostRecord,
            rows,
            **common,
            id=numbered("cost_"),
            agent_name="agent-0000000",
            execution_id=numbered("exec_"),
            prompt_tokens=10,
            completion_tokens=20,
            cost_usd=0.001,
            priced=True,
            timestamp=at,
        )
        for kind in ("agent", "execution", "session"):
            RowCount.insert(owner=owner, kind=kind, n=rows).execute()
        RowCount.insert(owner=owner, kind="cost", n=rows, amount=rows * 0.001).execute()
    database.execute_sql("ANALYZE")
    print(f"  seeded 4 x {rows:,} rows in {time.perf_counter() - began:.1f} s", flush=True)
    before_last = START + timedelta(seconds=rows - PAGE - 1)
    cursor = _encode(before_last, f"agent_{rows - PAGE - 1:026d}")
    database.close()
    return cursor, token


def one(client: httpx.Client, url: str, expect_total: int | None) -> float:
    """Seconds ``url`` took; the reply must be a 200 with ``total`` as expected (``None``:
    a list with no row count, as costs')."""
    began = time.perf_counter()
    reply = client.get(url)
    took = time.perf_counter() - began
    body = reply.json()
    if reply.status_code != 200 or body.get("total", expect_total) != expect_total:
        raise SystemExit(f"{url}: {reply.status_code} {reply.text[:300]}")
    return took


def requests_for(rows: int, cursor: str) -> dict[str, tuple[str, int | None]]:
    return {
        "agents, first page": ("/api/v1/agents", rows),
        "agents, last page by offset": (f"/api/v1/agents?offset={rows - PAGE}", rows),
        "agents, last page by cursor": (f"/api/v1/agents?after={cursor}", rows),
        "executions, first page": ("/api/v1/executions", rows),
        "sessions, first page": (f"/api/v1/sessions?limit={PAGE}", rows),
        "costs, newest 100 and their total": (f"/api/v1/costs?limit={PAGE}", None),
    }


def measure(sizes: list[int], requests: int) -> dict[int, dict[str, tuple[float, float]]]:
    """p50/p99 ms of each request at each size. Every size has its own server, all up at
    once, and the sizes take turns request by request: a neighbour's burst on this shared
    machine lands on every size alike instead of on whichever ran at that moment."""
    with contextlib.ExitStack() as stack:
        targets = {}
        for rows in sizes:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cadre-bench-")))
            print(f"filling {rows:,} rows of each kind...", flush=True)
            cursor, token = fill(tmp / "data", rows)
            server = stack.enter_context(serving("cadre", tmp / "data"))
            client = httpx.Client(base_url=server.base, headers=auth(token), timeout=120)
            targets[rows] = (stack.enter_context(client), requests_for(rows, cursor))
        names = list(requests_for(0, ""))
        samples: dict[tuple[int, str], list[float]] = {}
        for round_ in range(5 + requests):  # five warm-up rounds, not kept
            for name in names:
                for rows, (client, urls) in targets.items():
                    took = one(client, *urls[name])
                    if round_ >= 5:
                        samples.setdefault((rows, name), []).append(took)
        return {
            rows: {
                name: (percentile(samples[rows, name], 0.5), percentile(samples[rows, name], 0.99))
                for name in names
            }
            for rows in sizes
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--rows", type=int, help="also measure this many rows (say 1000000)")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    sizes = [args.small, args.large, *([args.rows] if args.rows else [])]
    results = measure(sizes, args.requests)
    small = results[args.small]
    larger = sizes[1:]
    print(
        "\n| request | "
        + " | ".join(f"{size:,} rows p50 / p99 ms" for size in sizes)
        + " | "
        + " | ".join(f"p99 {size:,} / {args.small:,}" for size in larger)
        + " |"
    )
    print("| --- |" + " ---: |" * (len(sizes) + len(larger)))
    for name in small:
        cells = [f"{results[size][name][0]:.2f} / {results[size][name][1]:.2f}" for size in sizes]
        ratios = [f"{results[size][name][1] / small[name][1]:.2f}x" for size in larger]
        print(f"| {name} | " + " | ".join(cells + ratios) + " |")


if __name__ == "__main__":
    main()
