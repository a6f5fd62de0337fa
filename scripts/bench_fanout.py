"""Cross-process event latency (issue 10): how much later a WebSocket subscriber on
server B sees an event of a run held by server A than one on A itself does.

Two ``cadre serve`` processes share PostgreSQL (and Redis). For every token event both
subscribers get, the latency is its arrival at the client minus the event's
``timestamp`` (set by A when it published it; same machine, same clock). The added
latency is B's minus A's, event by event, measured in the same run. The same is then
measured without Redis (B polls the database) as the reference Redis replaces. Then
``--cycles`` pauses are sent to B for a run on A: how long until A published ``paused``.

    python scripts/bench_fanout.py [--executions 5] [--tokens 300] [--delay-ms 10] [--cycles 10]

Needs ``--database-url postgresql://…`` and ``--redis-url redis://…`` (default:
``CADRE_TEST_DATABASE_URL`` and ``CADRE_TEST_REDIS_URL``); without them it says so and
exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.live_server import live_server, login_token, reset_postgres

SECRET = "bench-fanout-secret-key-long-enough-for-hs256-0123456789abcdef"
WARM_UP_SEQ = 20  # events before this are skipped: B may still be replaying them


def latency_ms(raw: str | bytes) -> tuple[int, float] | None:
    """(seq, milliseconds since it was published) of a token event, else None."""
    event = json.loads(raw)
    if event.get("type") != "token" or event["seq"] < WARM_UP_SEQ:
        return None
    published = datetime.fromisoformat(event["timestamp"]).timestamp()
    return event["seq"], (time.time() - published) * 1000


async def one_run(
    a: str, b: str, token: str, tokens: int, delay_ms: int
) -> tuple[dict[int, float], dict[int, float]]:
    """Latencies by seq on A (the run's own process) and on B, for one execution."""
    task = {"task": "fan out", "inputs": {"echo": {"tokens": tokens, "delay_ms": delay_ms}}}
    on_a: dict[int, float] = {}
    on_b: dict[int, float] = {}
    ws_a = "ws" + a.removeprefix("http")
    ws_b = "ws" + b.removeprefix("http")
    async with websockets.connect(f"{ws_a}/api/v1/agents/bench/stream?token={token}") as wa:
        await wa.send(json.dumps(task))
        first = json.loads(await wa.recv())
        execution_id = first["execution_id"]
        path = f"/api/v1/executions/{execution_id}/stream?after=0&token={token}"
        async with websockets.connect(ws_b + path) as wb:

            async def follow(ws: websockets.ClientConnection, into: dict[int, float]) -> None:
                async for raw in ws:
                    measured = latency_ms(raw)
                    if measured is not None:
                        into[measured[0]] = measured[1]
                    if json.loads(raw)["type"] == "complete":
                        return

            await asyncio.gather(follow(wa, on_a), follow(wb, on_b))
    return on_a, on_b


async def control_delays(a: str, b: str, token: str, cycles: int) -> list[float]:
    """Milliseconds from a pause sent to B to the ``paused`` status A published, per cycle."""
    task = {"task": "pause me", "inputs": {"echo": {"tokens": 100_000, "delay_ms": 10}}}
    headers = {"Authorization": f"Bearer {token}"}
    delays: list[float] = []
    ws_a = "ws" + a.removeprefix("http")
    async with (
        httpx.AsyncClient(base_url=b, headers=headers, timeout=30) as client,
        websockets.connect(f"{ws_a}/api/v1/agents/bench/stream?token={token}") as ws,
    ):
        await ws.send(json.dumps(task))
        execution_id = json.loads(await ws.recv())["execution_id"]
        for _ in range(cycles):
            sent = time.time()
            (await client.post(f"/api/v1/executions/{execution_id}/pause")).raise_for_status()
            while (event := json.loads(await ws.recv())).get("status") != "paused":
                pass
            published = datetime.fromisoformat(event["timestamp"]).timestamp()
            delays.append((published - sent) * 1000)
            (await client.post(f"/api/v1/executions/{execution_id}/resume")).raise_for_status()
        (await client.post(f"/api/v1/executions/{execution_id}/cancel")).raise_for_status()
    return delays


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99


async def measure(database_url: str, redis_url: str | None, args: argparse.Namespace) -> dict:
    reset_postgres(database_url)
    env = {
        "CADRE_DATABASE_URL": database_url,
        "CADRE_SECRET_KEY": SECRET,
        "CADRE_RATE_LIMIT_ENABLED": "false",
    }
    if redis_url:
        env["CADRE_REDIS_URL"] = redis_url
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        with live_server(data, **env) as a, live_server(data, **env) as b:
            token = login_token(a.url)
            headers = {"Authorization": f"Bearer {token}"}
            httpx.post(f"{a.url}/api/v1/agents", json={"name": "bench"}, headers=headers)
            same: list[float] = []
            cross: list[float] = []
            added: list[float] = []
            for _ in range(args.executions):
                on_a, on_b = await one_run(a.url, b.url, token, args.tokens, args.delay_ms)
                same += on_a.values()
                cross += on_b.values()
                added += [on_b[seq] - on_a[seq] for seq in on_b.keys() & on_a.keys()]
            control = await control_delays(a.url, b.url, token, args.cycles)
    return {
        "same": percentiles(same),
        "cross": percentiles(cross),
        "added": percentiles(added),
        "control": percentiles(control),
    }


def report(name: str, result: dict) -> None:
    print(f"{name}:")
    for key, label in (
        ("same", "same process (A)"),
        ("cross", "other process (B)"),
        ("added", "added by B"),
        ("control", "pause sent to B, paused on A"),
    ):
        p50, p99 = result[key]
        print(f"  {label:<28}  p50 {p50:8.2f} ms   p99 {p99:8.2f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--delay-ms", type=int, default=10)
    parser.add_argument("--cycles", type=int, default=10, help="pauses sent to B")
    parser.add_argument("--database-url", default=os.environ.get("CADRE_TEST_DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("CADRE_TEST_REDIS_URL"))
    args = parser.parse_args()
    if not (args.database_url or "").startswith(("postgres://", "postgresql://")) or not (
        args.redis_url
    ):
        print(
            "skipped: needs --database-url postgresql://… and --redis-url redis://… "
            "(or CADRE_TEST_DATABASE_URL and CADRE_TEST_REDIS_URL): two processes share them"
        )
        return
    with_redis = await measure(args.database_url, args.redis_url, args)
    without = await measure(args.database_url, None, args)
    print(
        f"{args.executions} executions x {args.tokens} tokens, {args.delay_ms} ms apart; "
        f"latency = arrival at the client - the event's timestamp"
    )
    report("with Redis (streams)", with_redis)
    report("without Redis (B polls the database)", without)
    ratio = without["added"][0] / with_redis["added"][0] if with_redis["added"][0] > 0 else None
    if ratio is not None:
        print(f"added p50 without Redis / with Redis: {ratio:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
