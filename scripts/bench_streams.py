"""Stream benchmark: Cadre's server CPU per streamed token against a raw ASGI floor app
(scripts/bench_apps/stream_floor_app.py), measured in the same run.

    python scripts/bench_streams.py [--streams 100] [--tokens 400] [--rounds 2]
    python scripts/bench_streams.py --many [--streams 1000] [--tokens 400] [--rate 5]
                                    [--by-second] [--clients 4] [--py-spy FILE]

Each server runs alone on one uvicorn worker (uvloop, no access log, fresh SQLite),
pinned to CPU 0 with this client pinned to CPU 1. ``--streams`` WebSockets open at
once on ``/api/v1/agents/bench/stream``, each sends a task asking the echo provider
for ``--tokens`` tokens, and reads every frame to ``complete``; the server's CPU time
over that phase (``/proc``), divided by the tokens streamed, is its CPU per token.
Servers take turns; each one's best round is reported, and Cadre/floor.

``--many`` runs Cadre alone with the tokens paced at ``--rate`` per second per stream
(the echo provider's ``delay_ms``) and reports peak RSS, the time to the first token,
and the token delay: a frame's arrival minus its event's ``timestamp`` (same clock).

The client measures itself too: how late its own loop wakes from a 10 ms sleep (``client
loop lag``, and by second with ``--by-second``). A frame that arrives while the client is
busy (decoding 5,000 frames a second, collecting its garbage) is stamped late by the
client, not the server: at 1,000 streams one client process lagged up to 0.5 s. With
``--clients N`` the streams are shared among N client processes (all on CPU 1; each runs
this script with the hidden ``--client URL``, prints its samples as JSON, and they are
merged), which keeps each client's loop and heap small: the delays are then the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import websockets

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.bench import (  # noqa: E402
    SERVER_OPTIONS,
    auth,
    cpu_seconds,
    prepare_direct_login,
    serving,
)

TASK = "benchmark the stream with a few words"


@dataclass
class Run:
    tokens: int = 0
    frames: int = 0
    first_ms: list[float] = field(default_factory=list)
    delay_ms: list[float] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)  # time.time() of each delay_ms
    lag_ms: list[float] = field(default_factory=list)  # this client's own loop lateness
    lagged: list[float] = field(default_factory=list)  # time.time() of each lag_ms

    def merge(self, other: dict) -> None:
        """Add a client process's counts and samples (``--clients``)."""
        self.tokens += other["tokens"]
        self.frames += other["frames"]
        for name in ("first_ms", "delay_ms", "arrived", "lag_ms", "lagged"):
            getattr(self, name).extend(other[name])


def _arrival_delay_ms(event: dict) -> float:
    stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
    return (time.time() - stamp) * 1000


async def one_stream(url: str, tokens: int, delay_ms: int, run: Run, timed: bool) -> None:
    """One execution over its WebSocket, read to ``complete``; counts into ``run``."""
    async with websockets.connect(url, max_size=None, open_timeout=120) as ws:
        body = {"task": TASK, "inputs": {"echo": {"tokens": tokens, "delay_ms": delay_ms}}}
        started = time.perf_counter()
        await ws.send(json.dumps(body))
        last = 0
        async for raw in ws:
            event = json.loads(raw)
            if event["type"] == "token":
                first = event.get("first_seq", event["seq"])
                if first != last + 1 and last:
                    raise SystemExit(f"tokens out of order: {first} after {last}")
                run.tokens += event["seq"] - first + 1
                run.frames += 1
                if last == 0:
                    run.first_ms.append((time.perf_counter() - started) * 1000)
                if timed:
                    run.delay_ms.append(_arrival_delay_ms(event))
                    run.arrived.append(time.time())
                last = event["seq"]
            elif event["type"] == "complete":
                if event["status"] != "completed":
                    raise SystemExit(f"stream ended {event['status']}: {event}")
                return
    raise SystemExit("stream closed without complete")


async def client_lag(run: Run, done: asyncio.Event) -> None:
    """How late this client's own loop wakes from a 10 ms sleep: a token delay is the
    server's only while this stays well under it."""
    while not done.is_set():
        asked = time.perf_counter()
        await asyncio.sleep(0.01)
        run.lag_ms.append((time.perf_counter() - asked) * 1000 - 10)
        run.lagged.append(time.time())


async def client_streams(url: str, count: int, tokens: int, delay_ms: int, timed: bool) -> Run:
    """``count`` streams in this process, with its loop's lag probed meanwhile."""
    run, done = Run(), asyncio.Event()
    probe = asyncio.ensure_future(client_lag(run, done))
    try:
        await asyncio.gather(*(one_stream(url, tokens, delay_ms, run, timed) for _ in range(count)))
    finally:
        done.set()
        await probe
    return run


async def streams(
    url: str, count: int, tokens: int, delay_ms: int, timed: bool, clients: int = 1
) -> Run:
    """``count`` streams read by ``clients`` processes (this one alone when 1), merged."""
    if clients == 1:
        run = await client_streams(url, count, tokens, delay_ms, timed)
    else:
        run = Run()
        shares = [count // clients + (i < count % clients) for i in range(clients)]
        processes = [
            await asyncio.create_subprocess_exec(
                *(sys.executable, __file__, "--client", url, "--streams", str(share)),
                *("--tokens", str(tokens), "--delay-ms", str(delay_ms)),
                *(["--timed"] if timed else []),
                stdout=asyncio.subprocess.PIPE,
            )
            for share in shares
        ]
        outputs = await asyncio.gather(*(process.communicate() for process in processes))
        for process, (out, _) in zip(processes, outputs, strict=True):
            if process.returncode != 0:
                raise SystemExit(f"a client process exited with {process.returncode}")
            run.merge(json.loads(out))
    if run.tokens != count * tokens:
        raise SystemExit(f"{run.tokens} tokens arrived, {count * tokens} were sent")
    return run


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``samples``."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


async def sample_rss(pid: int, done: asyncio.Event) -> float:
    peak = 0.0
    while not done.is_set():
        peak = max(peak, rss_mb(pid))
        await asyncio.sleep(0.25)
    return peak


def _py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` into ``out`` (collapsed stacks) until it gets SIGINT."""
    command = ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--rate", "250"]
    spy = subprocess.Popen([*command, "--output", str(out)], stdout=subprocess.DEVNULL)
    time.sleep(1)  # attached before the streams start
    return spy


async def measured(name: str, args: argparse.Namespace, delay_ms: int, timed: bool) -> dict:
    """Start ``name``, stream, and return the CPU per token (µs), RSS and latencies."""
    options = SERVER_OPTIONS["cadre"]  # room for every stream, as `cadre serve` leaves it
    limit = options.index("--limit-concurrency") + 1
    options[limit] = str(max(int(options[limit]), args.streams + 100))
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / name
        token = await asyncio.to_thread(prepare_direct_login, data_dir)
        env = {
            "CADRE_MAX_CONCURRENT_EXECUTIONS": str(args.streams + 16),
            "CADRE_MAX_CONCURRENT_EXECUTIONS_PER_USER": str(args.streams + 16),
        }
        with serving(name, data_dir, **env) as server:
            if name == "cadre":
                reply = httpx.post(
                    f"{server.base}/api/v1/agents", json={"name": "bench"}, headers=auth(token)
                )
                reply.raise_for_status()
            ws_base = server.base.replace("http://", "ws://")
            url = f"{ws_base}/api/v1/agents/bench/stream?token={token}"
            await streams(url, min(10, args.streams), 20, 0, False)  # warm-up
            pid = server.process.pid
            done = asyncio.Event()
            peak = asyncio.ensure_future(sample_rss(pid, done))
            spy = _py_spy(pid, args.py_spy) if args.py_spy and name == "cadre" else None
            before = cpu_seconds(pid)
            started = time.perf_counter()
            run = await streams(url, args.streams, args.tokens, delay_ms, timed, args.clients)
            elapsed = time.perf_counter() - started
            cpu = cpu_seconds(pid) - before
            done.set()
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait()
            await asyncio.sleep(0.5)  # the last closes are logged
            log = (data_dir.parent / f"{data_dir.name}.log").read_text()
            if "Traceback" in log:
                raise SystemExit(f"{name} logged errors:\n{log[-4000:]}")
            return {
                "cpu_us_per_token": cpu / run.tokens * 1e6,
                "seconds": elapsed,
                "frames_per_token": run.frames / run.tokens,
                "peak_rss_mb": max(await peak, rss_mb(pid, "VmHWM")),
                "first_p50_ms": percentile(run.first_ms, 0.5),
                "first_p99_ms": percentile(run.first_ms, 0.99),
                "delay_p50_ms": percentile(run.delay_ms, 0.5) if timed else None,
                "delay_p99_ms": percentile(run.delay_ms, 0.99) if timed else None,
                "by_second": _by_second(run) if timed else [],
                "clients": args.clients,
                "client_lag_p99_ms": percentile(run.lag_ms, 0.99),
                "client_lag_max_ms": max(run.lag_ms),
            }


def _by_second(run: Run) -> list[tuple[int, int, float, float, float, float]]:
    """``(second, frames, p50, p99, max, client lag max)`` of the token delays, by second of
    arrival: the streams opening and ending together apart from the steady state between,
    and the seconds where the client itself was late (its delays, not the server's)."""
    start = min(run.arrived)
    seconds: dict[int, list[float]] = {}
    for arrived, delay in zip(run.arrived, run.delay_ms, strict=True):
        seconds.setdefault(int(arrived - start), []).append(delay)
    lags: dict[int, float] = {}
    for lagged, lag in zip(run.lagged, run.lag_ms, strict=True):
        second = int(lagged - start)
        lags[second] = max(lags.get(second, 0.0), lag)
    return [
        (second, len(d), percentile(d, 0.5), percentile(d, 0.99), max(d), lags.get(second, 0.0))
        for second, d in sorted(seconds.items())
    ]


async def compare(args: argparse.Namespace) -> None:
    best: dict[str, dict] = {}
    for _ in range(args.rounds):
        for name in ("cadre", "stream_floor"):
            result = await measured(name, args, 0, False)
            if name not in best or result["cpu_us_per_token"] < best[name]["cpu_us_per_token"]:
                best[name] = result
    print(f"\nStreams: {args.streams} WebSockets at once, {args.tokens} echo tokens each")
    print(f"{'server':>8} {'CPU µs/token':>13} {'frames/token':>13} {'first p50 ms':>13}")
    for name, label in (("cadre", "Cadre"), ("stream_floor", "Floor")):
        row = best[name]
        print(
            f"{label:>8} {row['cpu_us_per_token']:>13.1f} {row['frames_per_token']:>13.2f} "
            f"{row['first_p50_ms']:>13.1f}"
        )
    ratio = best["cadre"]["cpu_us_per_token"] / best["stream_floor"]["cpu_us_per_token"]
    print(f"Cadre/floor, CPU per token: {ratio:.2f}x")


async def many(args: argparse.Namespace) -> None:
    delay_ms = round(1000 / args.rate)
    row = await measured("cadre", args, delay_ms, True)
    print(
        f"\nCadre: {args.streams} WebSockets at once, {args.tokens} tokens each "
        f"at {args.rate:g}/s ({row['seconds']:.0f} s)"
    )
    print(f"  peak RSS:          {row['peak_rss_mb']:.0f} MB")
    delay, first = (
        (row["delay_p50_ms"], row["delay_p99_ms"]),
        (row["first_p50_ms"], row["first_p99_ms"]),
    )
    print(f"  token delay:       p50 {delay[0]:.1f} ms, p99 {delay[1]:.1f} ms")
    print(f"  first token:       p50 {first[0]:.0f} ms, p99 {first[1]:.0f} ms")
    print(f"  CPU per token:     {row['cpu_us_per_token']:.1f} µs")
    print(f"  frames per token:  {row['frames_per_token']:.2f}")
    lag = (row["client_lag_p99_ms"], row["client_lag_max_ms"])
    print(f"  client loop lag:   p99 {lag[0]:.1f} ms, max {lag[1]:.1f} ms ({args.clients} process)")
    if args.by_second:
        header = ("second", "frames", "p50 ms", "p99 ms", "max ms", "client lag")
        print("\n" + " ".join(f"{name:>7}" for name in header))
        for second, frames, p50, p99, worst, lag in row["by_second"]:
            print(f"{second:>7} {frames:>7} {p50:>7.1f} {p99:>7.1f} {worst:>7.1f} {lag:>7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, help="concurrent WebSockets (100; --many: 1000)")
    parser.add_argument("--tokens", type=int, default=400, help="echo tokens per stream")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved; the best is reported")
    parser.add_argument("--many", action="store_true", help="Cadre alone, paced tokens")
    parser.add_argument("--rate", type=float, default=5.0, help="--many: tokens/s per stream")
    parser.add_argument("--py-spy", type=Path, help="record Cadre's stacks into this file")
    parser.add_argument(
        "--by-second", action="store_true", help="--many: the token delays by second too"
    )
    parser.add_argument(
        "--clients", type=int, default=1, help="client processes sharing the streams (1)"
    )
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)  # one of --clients
    parser.add_argument("--delay-ms", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--timed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.streams = args.streams or (1000 if args.many else 100)
    if args.client:  # a client process of ``--clients``: its samples as JSON on stdout
        run = asyncio.run(
            client_streams(args.client, args.streams, args.tokens, args.delay_ms, args.timed)
        )
        print(json.dumps(run.__dict__))
        return
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(0, {1})  # the server is on CPU 0
    asyncio.run(many(args) if args.many else compare(args))


if __name__ == "__main__":
    main()
