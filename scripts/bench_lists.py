"""Lists at scale: the same list requests with a small and a large table, as ratios.

    python scripts/bench_lists.py [--small 1000] [--large 100000] [--requests 200]

For each size, a fresh SQLite data directory gets one user owning that many agents and
that many executions (bulk-inserted, with the per-owner counts the API keeps), then
``cadre serve`` (one worker, pinned to CPU 0 when taskset exists) answers, one request
at a time, ``--requests`` of each:

* ``GET /api/v1/agents`` (the first page of 100, with its exact ``total``);
* the last page of agents by ``offset``, and the same page by cursor (``after``);
* ``GET /api/v1/executions`` (the first page, newest first).

It prints p50/p99 per request and size, and the large/small ratio of each p99 (the
issue's goal: at most 1.5x). Nothing is asserted: on a shared machine a ratio measured
in one run is what counts.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

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
from storage.counts import RowCount  # noqa: E402
from storage.executions import Execution  # noqa: E402
from storage.queries import _encode  # noqa: E402
from storage.users import User  # noqa: E402

PAGE = 100
CHUNK = 5000


def fill(data_dir: Path, rows: int) -> tuple[str, str]:
    """``rows`` agents and executions for the bench user; the last page's cursor, a token."""
    token = prepare_direct_login(data_dir)
    settings = Settings(_env_file=None, data_dir=data_dir, secret_key="x" * 64)
    database = db.open_database(settings.effective_database_url)
    owner = User.get(User.username == USERNAME).id
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with database.atomic():
        for first in range(0, rows, CHUNK):
            batch = range(first, min(rows, first + CHUNK))
            Agent.insert_many(
                [
                    {
                        "id": f"agent_{i:026d}",
                        "owner": owner,
                        "name": f"agent-{i:07d}",
                        "provider": "echo",
                        "model": "echo",
                        "created_at": start + timedelta(seconds=i),
                        "updated_at": start + timedelta(seconds=i),
                    }
                    for i in batch
                ]
            ).execute()
            Execution.insert_many(
                [
                    {
                        "id": f"exec_{i:026d}",
                        "owner": owner,
                        "agent_id": "agent_0",
                        "agent_name": "agent-0000000",
                        "task": "bench",
                        "mode": "safe",
                        "inputs": {},
                        "config": {},
                        "provider": "echo",
                        "model": "echo",
                        "status": "completed",
                        "created_at": start + timedelta(seconds=i),
                    }
                    for i in batch
                ]
            ).execute()
        for kind in ("agent", "execution"):
            RowCount.insert(owner=owner, kind=kind, n=rows).execute()
    before_last = start + timedelta(seconds=rows - PAGE - 1)
    cursor = _encode(before_last, f"agent_{rows - PAGE - 1:026d}")
    database.execute_sql("ANALYZE")
    database.close()
    return cursor, token


def timed(client: httpx.Client, url: str, requests: int, expect_total: int) -> tuple[float, float]:
    samples = []
    for _ in range(requests):
        began = time.perf_counter()
        reply = client.get(url)
        samples.append(time.perf_counter() - began)
        body = reply.json()
        if reply.status_code != 200 or body["total"] != expect_total:
            raise SystemExit(f"{url}: {reply.status_code} {reply.text[:300]}")
    return percentile(samples, 0.5), percentile(samples, 0.99)


def measure(rows: int, requests: int) -> dict[str, tuple[float, float]]:
    with tempfile.TemporaryDirectory(prefix="cadre-bench-lists-") as tmp:
        data_dir = Path(tmp) / "data"
        print(f"filling {rows:,} agents and executions...", flush=True)
        cursor, token = fill(data_dir, rows)
        with (
            serving("cadre", data_dir) as server,
            httpx.Client(base_url=server.base, headers=auth(token), timeout=60) as client,
        ):
            urls = {
                "agents, first page": "/api/v1/agents",
                "agents, last page by offset": f"/api/v1/agents?offset={rows - PAGE}",
                "agents, last page by cursor": f"/api/v1/agents?after={cursor}",
                "executions, first page": "/api/v1/executions",
            }
            for url in urls.values():  # warm up
                timed(client, url, 5, rows)
            return {name: timed(client, url, requests, rows) for name, url in urls.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    small = measure(args.small, args.requests)
    large = measure(args.large, args.requests)
    print(
        f"\n| request | {args.small:,} rows p50 / p99 ms | {args.large:,} rows p50 / p99 ms "
        "| p99 ratio |"
    )
    print("| --- | ---: | ---: | ---: |")
    for name in small:
        (s50, s99), (l50, l99) = small[name], large[name]
        print(f"| {name} | {s50:.2f} / {s99:.2f} | {l50:.2f} / {l99:.2f} | {l99 / s99:.2f}x |")


if __name__ == "__main__":
    main()
