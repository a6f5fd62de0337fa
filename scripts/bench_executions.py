"""Execution benchmarks: throughput, time to first token and the server's CPU time per
execution at 1, 10 and 100 concurrent executions (echo provider, WebSocket streams), and
what Cadre adds per streamed token compared with the same provider yielding into a bare
loop, measured in the same run.

Each level also runs against the stream floor (scripts/bench_apps/stream_floor_app.py: the
same WebSocket stream and events with no framework, no execution row, no executor), so
the CPU per execution is reported as Cadre/floor from the same run, whatever the machine.

    python scripts/bench_executions.py [--executions 200] [--tokens 20] [--long 5000]
        [--levels 1,10,100] [--no-floor] [--py-spy FILE]

``--py-spy FILE`` records the server's stacks (raw collapsed format) over the
concurrency levels, to see where an execution's CPU goes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cadre.engine.providers.base import Message, ProviderRequest, TextDelta
from cadre.engine.providers.echo import EchoProvider
from scripts.bench import cpu_seconds, prepare_direct_login, serving
from scripts.live_server import live_server, login_token


async def one_execution(ws_base: str, token: str, tokens: int) -> tuple[float, float]:
    """(seconds to the first token, seconds to complete) for one streamed execution."""
    url = f"{ws_base}/api/v1/agents/bench/stream?token={token}"
    async with websockets.connect(url, max_size=None) as ws:
        started = time.perf_counter()
        await ws.send(
            json.dumps({"task": "benchmark the stream", "inputs": {"echo": {"tokens": tokens}}})
        )
        first = None
        async for raw in ws:
            kind = json.loads(raw)["type"]
            if kind == "token" and first is None:
                first = time.perf_counter() - started
            if kind == "complete":
                return first or 0.0, time.perf_counter() - started
    raise RuntimeError("stream ended without complete")


async def level(
    ws_base: str, token: str, concurrency: int, total: int, tokens: int, pid: int
) -> dict:
    queue = list(range(total))
    results: list[tuple[float, float]] = []

    async def worker() -> None:
        while queue:
            queue.pop()
            results.append(await one_execution(ws_base, token, tokens))

    started, cpu = time.perf_counter(), cpu_seconds(pid)
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu
    firsts = sorted(r[0] * 1000 for r in results)
    return {
        "concurrency": concurrency,
        "executions": total,
        "executions_per_s": total / elapsed,
        "cpu_ms": cpu / total * 1000,
        "ttft_p50_ms": statistics.median(firsts),
        "ttft_p99_ms": firsts[min(len(firsts) - 1, int(len(firsts) * 0.99))],
    }


def _py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` into ``out`` (collapsed stacks) until it gets SIGINT."""
    command = ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--rate", "250"]
    spy = subprocess.Popen([*command, "--output", str(out)], stdout=subprocess.DEVNULL)
    time.sleep(1)  # attached before the executions start
    return spy


async def floor_levels(levels: list[int], executions: int, tokens: int) -> list[dict]:
    """The same levels against the stream floor, which takes any agent name."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "floor"
        token = await asyncio.to_thread(prepare_direct_login, data_dir)
        with serving("stream_floor", data_dir) as server:
            ws_base, pid = server.base.replace("http://", "ws://"), server.process.pid
            await level(ws_base, token, 10, 20, tokens, pid)  # warm-up
            return [await level(ws_base, token, c, max(executions, c), tokens, pid) for c in levels]


async def bare_loop_seconds_per_token(tokens: int) -> float:
    """The echo provider yielding into a loop that does nothing: the floor."""
    request = ProviderRequest(
        model="echo",
        messages=[Message(role="user", content="benchmark the stream")],
        inputs={"echo": {"tokens": tokens}},
    )
    started = time.perf_counter()
    count = 0
    async for event in EchoProvider().stream(request):
        count += isinstance(event, TextDelta)
    return (time.perf_counter() - started) / count


async def cadre_seconds_per_token(base: str, headers: dict, tokens: int) -> float:
    """Server-side time per token of one long execution (its latency after the first token)."""
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as client:
        reply = await client.post(
            "/api/v1/agents/bench/execute",
            json={"task": "benchmark the stream", "inputs": {"echo": {"tokens": tokens}}},
        )
        execution_id = reply.json()["execution_id"]
        while True:
            body = (await client.get(f"/api/v1/executions/{execution_id}")).json()
            if body["status"] in ("completed", "failed", "cancelled"):
                break
            await asyncio.sleep(0.1)
    usage = body["usage"]
    return (usage["latency_ms"] - usage["time_to_first_token_ms"]) / 1000 / (tokens - 1)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--executions", type=int, default=200, help="per concurrency level")
    parser.add_argument("--tokens", type=int, default=20, help="tokens per execution")
    parser.add_argument("--long", type=int, default=5000, help="tokens of the per-token run")
    parser.add_argument("--levels", default="1,10,100", help="concurrency levels, comma-separated")
    parser.add_argument("--no-floor", action="store_true", help="skip the stream floor's runs")
    parser.add_argument("--py-spy", type=Path, help="record the server's stacks into this file")
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        # One user runs them all: without the per-user cap (4) the levels above it would
        # measure that user's queue rather than the server.
        env = {
            "CADRE_RATE_LIMIT_ENABLED": "false",
            "CADRE_MAX_CONCURRENT_EXECUTIONS": "128",
            "CADRE_MAX_CONCURRENT_EXECUTIONS_PER_USER": "128",
        }
        with live_server(Path(tmp) / "data", **env) as server:
            token = login_token(server.url)
            headers = {"Authorization": f"Bearer {token}"}
            httpx.post(f"{server.url}/api/v1/agents", json={"name": "bench"}, headers=headers)
            ws_base = server.url.replace("http://", "ws://")
            pid = server.process.pid
            await level(ws_base, token, 10, 20, args.tokens, pid)  # warm-up
            spy = _py_spy(pid, args.py_spy) if args.py_spy else None
            rows = [
                await level(ws_base, token, c, max(args.executions, c), args.tokens, pid)
                for c in levels
            ]
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait()
            cadre = await cadre_seconds_per_token(server.url, headers, args.long)
    floors = [] if args.no_floor else await floor_levels(levels, args.executions, args.tokens)
    bare = await bare_loop_seconds_per_token(args.long)
    print(f"\nExecutions ({args.tokens} echo tokens each, streamed over WebSocket, one worker)")
    print(
        f"{'server':>6} {'concurrent':>10} {'exec/s':>8} {'TTFT p50 ms':>12} {'TTFT p99 ms':>12} "
        f"{'CPU ms/exec':>12}"
    )
    for label, table in (("Cadre", rows), ("Floor", floors)):
        for row in table:
            print(
                f"{label:>6} {row['concurrency']:>10} {row['executions_per_s']:>8.1f} "
                f"{row['ttft_p50_ms']:>12.1f} {row['ttft_p99_ms']:>12.1f} {row['cpu_ms']:>12.2f}"
            )
    for row, floor in zip(rows, floors, strict=False):
        ratio = row["cpu_ms"] / floor["cpu_ms"]
        print(f"Cadre/floor, CPU per execution at {row['concurrency']} at once: {ratio:.2f}x")
    print(f"\nPer streamed token ({args.long}-token execution)")
    print(f"  bare provider loop: {bare * 1e6:8.1f} µs")
    print(f"  through Cadre:      {cadre * 1e6:8.1f} µs (stored, numbered, fanned out)")
    print(f"  Cadre adds:         {(cadre - bare) * 1e6:8.1f} µs per token ({cadre / bare:.1f}x)")


if __name__ == "__main__":
    asyncio.run(main())
