"""Scale-out benchmark: executions per second with 1 and with 2 ``cadre worker`` processes
behind one ``cadre serve --no-worker`` on PostgreSQL, and their ratio (the goal is 1.8x
or better), measured in the same run on the same database.

Each execution streams ``--tokens`` echo tokens ``--delay-ms`` apart, standing in for a
provider's latency; each worker runs ``--concurrency`` at once. Needs PostgreSQL:

    CADRE_BENCH_DATABASE_URL=postgresql://… python scripts/bench_workers.py [--executions 400]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.live_server import live_server, live_worker, login_token, reset_postgres

TERMINAL = ("completed", "failed", "cancelled", "timeout")


def finished(url: str) -> int:
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM execution WHERE status = ANY(%s)", (list(TERMINAL),)
        ).fetchone()
    return row[0] if row else 0


async def submit(base: str, headers: dict[str, str], count: int, body: dict) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        semaphore = asyncio.Semaphore(16)

        async def one() -> None:
            async with semaphore:
                reply = await client.post(
                    f"{base}/api/v1/agents/bench/execute", json=body, headers=headers
                )
                reply.raise_for_status()

        await asyncio.gather(*(one() for _ in range(count)))


def run(url: str, workers: int, args: argparse.Namespace) -> float:
    """Executions per second, from the first submission to the last one's end."""
    reset_postgres(url)
    env = {
        "CADRE_DATABASE_URL": url,
        "CADRE_RATE_LIMIT_ENABLED": "false",
        # one user submits everything: their cap (across workers) must not be the limit
        "CADRE_MAX_CONCURRENT_EXECUTIONS_PER_USER": str(2 * args.concurrency),
    }
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        data = Path(tmp) / "data"
        api = stack.enter_context(live_server(data, "--no-worker", **env))
        headers = {"Authorization": f"Bearer {login_token(api.url)}"}
        httpx.post(f"{api.url}/api/v1/agents", json={"name": "bench"}, headers=headers)
        for _ in range(workers):
            stack.enter_context(live_worker(data, "--concurrency", str(args.concurrency), **env))
        deadline = time.monotonic() + 30
        while httpx.get(f"{api.url}/health").json()["workers"] < workers:
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not start")
            time.sleep(0.1)
        body = {"task": "bench", "inputs": {"echo": {"tokens": args.tokens}}}
        body["inputs"]["echo"]["delay_ms"] = args.delay_ms
        started = time.perf_counter()
        asyncio.run(submit(api.url, headers, args.executions, body))
        submitted = time.perf_counter() - started
        while finished(url) < args.executions:
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        print(
            f"  {workers} worker(s): all submitted after {submitted:.1f} s, "
            f"done after {elapsed:.1f} s"
        )
        return args.executions / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=400)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--delay-ms", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8, help="per worker")
    args = parser.parse_args()
    url = os.environ.get("CADRE_BENCH_DATABASE_URL", "")
    if not url.startswith("postgres"):
        print("bench_workers: skipped, set CADRE_BENCH_DATABASE_URL=postgresql://… to run it")
        return 0
    one = run(url, 1, args)
    two = run(url, 2, args)
    print(
        f"executions/s ({args.executions} executions, {args.tokens} tokens "
        f"{args.delay_ms} ms apart, {args.concurrency} at once per worker)"
    )
    print(f"  1 worker:  {one:8.1f}")
    print(f"  2 workers: {two:8.1f}")
    print(f"  2/1 ratio: {two / one:8.2f}x (goal >= 1.8x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
