"""Execution benchmarks: throughput, time to first token and the server's CPU time per
execution at 1, 10 and 100 concurrent executions (echo provider, WebSocket streams), and
what Cadre adds per streamed token compared with the same provider yielding into a bare
loop, measured in the same run.

Each level also runs against the stream floor (scripts/bench_apps/stream_floor_app.py: the
same WebSocket stream and events with no framework, no execution row, no executor), so
the CPU per execution is reported as Cadre/floor from the same run, whatever the machine.
Both servers run pinned to CPU 0 and this client to CPU 1 (when the machine has two), in
``--rounds`` interleaved rounds, each level's best round reported: on a shared machine
one round's CPU time per execution moves by a tenth, the slower ones measuring the
neighbours.

    python scripts/bench_executions.py [--executions 200] [--tokens 20] [--long 5000]
        [--levels 1,10,100] [--rounds 2] [--no-floor] [--py-spy FILE] [--instructions]

``--instructions`` runs both servers under valgrind's callgrind and counts the machine
instructions each runs per execution instead of its CPU time: the same work gives the
same count within a few per cent (timers, the garbage collector) however loaded the
machine is, where CPU time on a shared machine moves by a fifth between runs. Valgrind
runs them some 50 times slower: a few hundred executions per level are enough.

``--py-spy FILE`` records the server's stacks (raw collapsed format) over the
concurrency levels, to see where an execution's CPU goes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
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
from scripts.bench import cpu_seconds, pinned, prepare_direct_login, serving
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


class CpuTime:
    """The server's CPU time (user and system, from /proc), in ms."""

    label, scale = "CPU ms/exec", 1000.0

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def start(self) -> None:
        self.before = cpu_seconds(self.pid)

    def stop(self) -> float:
        return cpu_seconds(self.pid) - self.before


class Instructions:
    """Instructions the server ran, in millions, counted by callgrind (``--instructions``):
    counting is switched on at the first ``start`` (start-up and imports are not counted),
    the counters zeroed at each ``start`` and dumped at ``stop``."""

    label, scale = "M instr/exec", 1e-6

    def __init__(self, pid: int, dumps: Path) -> None:
        self.pid, self.dumps = pid, dumps

    def _control(self, *options: str) -> None:
        subprocess.run(["callgrind_control", *options, str(self.pid)], check=True, **QUIET)

    def start(self) -> None:
        self._control("--instr=on")
        self._control("--zero")

    def stop(self) -> float:
        self._control("--dump")
        newest = max(self.dumps.glob("callgrind.out.*"), key=lambda path: path.stat().st_mtime)
        return float(re.search(r"^summary: (\d+)", newest.read_text(), re.M).group(1))


QUIET = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
Meter = CpuTime | Instructions


def callgrind(dumps: Path) -> list[str]:
    """The command prefix that runs a server under callgrind, counting nothing yet."""
    out = f"--callgrind-out-file={dumps}/callgrind.out.%p"
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", out]


async def level(
    ws_base: str, token: str, concurrency: int, total: int, tokens: int, meter: Meter
) -> dict:
    queue = list(range(total))
    results: list[tuple[float, float]] = []

    async def worker() -> None:
        while queue:
            queue.pop()
            results.append(await one_execution(ws_base, token, tokens))

    meter.start()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed, cost = time.perf_counter() - started, meter.stop()
    firsts = sorted(r[0] * 1000 for r in results)
    return {
        "concurrency": concurrency,
        "executions": total,
        "executions_per_s": total / elapsed,
        "cost": cost / total * meter.scale,
        "ttft_p50_ms": statistics.median(firsts),
        "ttft_p99_ms": firsts[min(len(firsts) - 1, int(len(firsts) * 0.99))],
    }


def _py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` into ``out`` (collapsed stacks) until it gets SIGINT."""
    command = ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--rate", "250"]
    spy = subprocess.Popen([*command, "--output", str(out)], stdout=subprocess.DEVNULL)
    time.sleep(1)  # attached before the executions start
    return spy


def meter_for(pid: int, dumps: Path | None) -> Meter:
    return CpuTime(pid) if dumps is None else Instructions(pid, dumps)


async def floor_levels(levels: list[int], args: argparse.Namespace) -> list[dict]:
    """The same levels against the stream floor, which takes any agent name."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, dumps = Path(tmp) / "floor", Path(tmp) if args.instructions else None
        token = await asyncio.to_thread(prepare_direct_login, data_dir)
        wrapper = callgrind(dumps) if dumps else []
        with serving("stream_floor", data_dir, wrapper=wrapper) as server:
            ws_base = server.base.replace("http://", "ws://")
            meter = meter_for(server.process.pid, dumps)
            await level(ws_base, token, 10, 20, args.tokens, meter)  # warm-up
            return [
                await level(ws_base, token, c, max(args.executions, c), args.tokens, meter)
                for c in levels
            ]


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


async def cadre_levels(
    levels: list[int], args: argparse.Namespace, long: int
) -> tuple[list[dict], str, float | None]:
    """The levels against ``cadre serve`` (and, with ``long``, the per-token run): its rows,
    the meter's label and the seconds per token (None without ``long``)."""
    with tempfile.TemporaryDirectory() as tmp:
        # One user runs them all: without the per-user cap (4) the levels above it would
        # measure that user's queue rather than the server.
        env = {
            "CADRE_RATE_LIMIT_ENABLED": "false",
            "CADRE_MAX_CONCURRENT_EXECUTIONS": "128",
            "CADRE_MAX_CONCURRENT_EXECUTIONS_PER_USER": "128",
        }
        dumps = Path(tmp) if args.instructions else None
        # on CPU 0, as the floor's server is (``serving``): this client runs on CPU 1
        wrapper = pinned(callgrind(dumps) if dumps else [], 0)
        with live_server(Path(tmp) / "data", wrapper=wrapper, **env) as server:
            token = login_token(server.url)
            headers = {"Authorization": f"Bearer {token}"}
            httpx.post(f"{server.url}/api/v1/agents", json={"name": "bench"}, headers=headers)
            ws_base = server.url.replace("http://", "ws://")
            pid = server.process.pid
            meter = meter_for(pid, dumps)
            await level(ws_base, token, 10, 20, args.tokens, meter)  # warm-up
            spy = _py_spy(pid, args.py_spy) if args.py_spy else None
            rows = [
                await level(ws_base, token, c, max(args.executions, c), args.tokens, meter)
                for c in levels
            ]
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait()
            per_token = await cadre_seconds_per_token(server.url, headers, long) if long else None
    return rows, meter.label, per_token


def best(rounds: list[list[dict]]) -> list[dict]:
    """Per level, the round that cost least: the others measured the machine's neighbours."""
    return [min(runs, key=lambda row: row["cost"]) for runs in zip(*rounds, strict=True)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--executions", type=int, default=200, help="per concurrency level")
    parser.add_argument("--tokens", type=int, default=20, help="tokens per execution")
    parser.add_argument(
        "--long", type=int, default=5000, help="tokens of the per-token run (0: no such run)"
    )
    parser.add_argument("--levels", default="1,10,100", help="concurrency levels, comma-separated")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved; the best is reported")
    parser.add_argument("--no-floor", action="store_true", help="skip the stream floor's runs")
    parser.add_argument("--py-spy", type=Path, help="record the server's stacks into this file")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions (callgrind), not CPU"
    )
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]
    # latencies under valgrind say nothing: no per-token run then
    long = 0 if args.instructions else args.long
    cadre_rounds: list[list[dict]] = []
    floor_rounds: list[list[dict]] = []
    cadre = None  # seconds per token, measured in the first round
    for round_ in range(args.rounds):
        rows, label, per_token = await cadre_levels(levels, args, long if round_ == 0 else 0)
        cadre = per_token if per_token is not None else cadre
        cadre_rounds.append(rows)
        if not args.no_floor:
            floor_rounds.append(await floor_levels(levels, args))
    rows = best(cadre_rounds)
    floors = best(floor_rounds) if floor_rounds else []
    print(
        f"\nExecutions ({args.tokens} echo tokens each, streamed over WebSocket, one worker; "
        f"best of {args.rounds} interleaved rounds)"
    )
    print(
        f"{'server':>6} {'concurrent':>10} {'exec/s':>8} {'TTFT p50 ms':>12} {'TTFT p99 ms':>12} "
        f"{label:>12}"
    )
    for name, table in (("Cadre", rows), ("Floor", floors)):
        for row in table:
            print(
                f"{name:>6} {row['concurrency']:>10} {row['executions_per_s']:>8.1f} "
                f"{row['ttft_p50_ms']:>12.1f} {row['ttft_p99_ms']:>12.1f} {row['cost']:>12.2f}"
            )
    for row, floor in zip(rows, floors, strict=False):
        ratio = row["cost"] / floor["cost"]
        what = "CPU" if not args.instructions else "instructions"
        print(f"Cadre/floor, {what} per execution at {row['concurrency']} at once: {ratio:.2f}x")
    if cadre is None:
        return
    bare = await bare_loop_seconds_per_token(long)
    print(f"\nPer streamed token ({long}-token execution)")
    print(f"  bare provider loop: {bare * 1e6:8.1f} µs")
    print(f"  through Cadre:      {cadre * 1e6:8.1f} µs (stored, numbered, fanned out)")
    print(f"  Cadre adds:         {(cadre - bare) * 1e6:8.1f} µs per token ({cadre / bare:.1f}x)")


if __name__ == "__main__":
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the servers are on CPU 0
    asyncio.run(main())
