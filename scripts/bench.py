"""HTTP benchmark: Cadre against the same two endpoints in FastAPI, bare Starlette, and a
raw ASGI floor (sqlite3 + orjson + PyJWT, no framework: scripts/bench_apps/floor_app.py).

    python scripts/bench.py [--duration 10] [--connections 32] [--rounds 2] [--json [PATH]]
    python scripts/bench.py --profile [--duration 10] [--profile-out DIR]
    python scripts/bench.py --logins-only

Each server runs alone on one uvicorn worker (uvloop, httptools, no access log),
pinned to CPU 0 when ``taskset`` exists, with wrk pinned to CPU 1. Every server
gets a fresh SQLite data directory, one user who logged in, and 100 agents
(created through the endpoint under test). Measured with wrk, after a warm-up:

* ``GET /api/v1/agents``: authenticated, the default page of 100 agents;
* ``POST /api/v1/agents``: authenticated, a new agent name on every request.

A smoke request checks each endpoint's reply before it is measured, wrk's Lua
script counts every non-2xx reply (any fails the run) and, after the POST run,
the agent count must match the requests wrk saw answered. Servers are measured
in interleaved rounds and each one's best round is reported: on a shared
2-core machine the slower rounds measure the neighbours.

Then, against Cadre alone: ``/health`` requested back-to-back, first on its own, then
while 20 logins of the bench user run at once (argon2 in threads): its p50/p99 in both
phases and their ratio (``--logins-only`` runs just this).

``--profile`` measures nothing: it runs Cadre under load again and samples it
with py-spy (installed with pip when missing; cProfile in-process when py-spy
cannot run), then prints the top functions by cumulative and by self time and
the self time grouped by layer, for each endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.metadata
import json
import os
import platform
import pstats
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cadre.auth import TokenService, hash_password, password_hasher  # noqa: E402
from cadre.settings import Settings  # noqa: E402
from models_gen.api import Agent, AgentList  # noqa: E402
from scripts.live_server import free_port, login_token  # noqa: E402
from storage import db, users  # noqa: E402

SERVERS = {
    "cadre": "cadre.app:create_app",
    "fastapi": "scripts.bench_apps.fastapi_app:create_app",
    "starlette": "scripts.bench_apps.starlette_app:create_app",
    "floor": "scripts.bench_apps.floor_app:create_app",
    "stream_floor": "scripts.bench_apps.stream_floor_app:create_app",
}
# Cadre runs the HTTP protocol ``cadre serve`` runs (httptools with a bounded, timed head:
# cadre/server.py) and its connection limit; ``--cadre-http httptools`` measures without them.
SERVER_OPTIONS = {
    "cadre": [
        *("--http", "cadre.server:HttpProtocol", "--ws", "cadre.server:WebSocketProtocol"),
        *("--limit-concurrency", "1000"),
    ],
    "fastapi": ["--http", "httptools"],
    "starlette": ["--http", "httptools"],
    "floor": ["--http", "httptools"],
    "stream_floor": ["--http", "httptools"],
}
ENDPOINTS = ("GET", "POST")
LABELS = {"cadre": "Cadre", "fastapi": "FastAPI", "starlette": "Starlette", "floor": "Floor"}
OTHERS = ("fastapi", "starlette", "floor")
LIST_SERVERS = ("cadre", *OTHERS)  # those serving the agents list (not the stream floor)
AGENTS_PATH = "/api/v1/agents"
WRK_SCRIPT = ROOT / "scripts" / "bench_apps" / "wrk_bench.lua"
SECRET = "bench-secret-key-long-enough-for-every-hs-algorithm-0123456789abcdef"
USERNAME, PASSWORD = "bench", "bench-password-1"
SEEDED = 100
WARM_UP_SECONDS = 2
UNLIMITED = "1000000000/hour"
VERSIONS = ("connexion", "starlette", "fastapi", "uvicorn", "pydantic", "peewee", "PyJWT")


# --- tools -------------------------------------------------------------------------------


def ensure_wrk() -> str:
    """wrk's path, installing Debian's package first when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is not on PATH: running apt-get update && apt-get install -y wrk", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is still missing after apt-get install")
    return found


def pinned(command: list[str], cpu: int) -> list[str]:
    """``command`` pinned to ``cpu`` when taskset exists (it execs: the pid stays the same)."""
    return ["taskset", "-c", str(cpu), *command] if shutil.which("taskset") else command


# --- servers -----------------------------------------------------------------------------


def server_env(data_dir: Path) -> dict[str, str]:
    """The environment of a server: no inherited CADRE_* setting, unlimited rate limits."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADRE_")}
    env.update(
        CADRE_DATA_DIR=str(data_dir),
        CADRE_SECRET_KEY=SECRET,
        CADRE_LOG_LEVEL="WARNING",
        CADRE_VALIDATE_RESPONSES="false",
        CADRE_RATE_LIMIT_ENABLED="true",
        CADRE_RATE_LIMIT_ANONYMOUS=UNLIMITED,
        CADRE_RATE_LIMIT_AUTHENTICATED=UNLIMITED,
        CADRE_RATE_LIMIT_PREMIUM=UNLIMITED,
        PYTHONPATH=str(ROOT),
    )
    return env


@dataclass
class Server:
    name: str
    base: str
    process: subprocess.Popen[bytes]


@contextmanager
def serving(name: str, data_dir: Path, wrapper: Sequence[str] = (), **env: str) -> Iterator[Server]:
    """Run server ``name`` over ``data_dir`` on one uvicorn worker (its command after
    ``wrapper``, such as valgrind's) until the block ends."""
    port = free_port()
    command = [
        *wrapper,
        *(sys.executable, "-m", "uvicorn", SERVERS[name], "--factory"),
        *("--host", "127.0.0.1", "--port", str(port)),
        *("--loop", "uvloop", *SERVER_OPTIONS[name]),
        *("--no-access-log", "--no-proxy-headers", "--log-level", "warning"),
    ]
    log_path = data_dir.parent / f"{data_dir.name}.log"
    # The working directory is the data dir's parent: no developer's .env is read.
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            pinned(command, 0),
            env={**server_env(data_dir), **env},
            cwd=data_dir.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                output = log_path.read_text()
                raise SystemExit(f"{name} exited with {process.returncode}:\n{output}")
            try:
                httpx.get(base + AGENTS_PATH, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name} did not start within 60 s") from None
                time.sleep(0.05)
        yield Server(name, base, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def prepare_direct_login(data_dir: Path) -> str:
    """For the comparison apps: the user created, and logged in, with Cadre's own code."""
    settings = Settings(_env_file=None, data_dir=data_dir, secret_key=SECRET)
    database = db.open_database(settings.effective_database_url)
    db.migrate(database)
    users.create_user(
        email=f"{USERNAME}@example.com",
        username=USERNAME,
        full_name=None,
        password_hash=hash_password(PASSWORD, password_hasher(settings)),
    )
    pair = asyncio.run(TokenService(settings).login(USERNAME, PASSWORD, None))
    token = pair["access_token"]
    database.close()
    return token


def seed_agents(base: str, token: str) -> None:
    """Create the agents the GET lists, through the POST endpoint itself."""
    with httpx.Client(base_url=base, headers=auth(token)) as client:
        for i in range(SEEDED):
            body = {"name": f"agent-{i:03d}", "provider": "echo", "model": "echo"}
            reply = client.post(AGENTS_PATH, json=body)
            if reply.status_code != 201:
                raise SystemExit(f"seeding failed: {reply.status_code} {reply.text[:300]}")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def ready_server(name: str, data_dir: Path) -> Iterator[tuple[Server, str]]:
    """A started server with a logged-in user owning ``SEEDED`` agents, and the token."""
    token = None if name == "cadre" else prepare_direct_login(data_dir)
    with serving(name, data_dir) as server:
        if token is None:  # Cadre: register and log in over HTTP, as a client would
            token = login_token(server.base, USERNAME, PASSWORD)
        seed_agents(server.base, token)
        yield server, token


# --- smoke checks ------------------------------------------------------------------------


def agent_total(base: str, token: str) -> int:
    reply = httpx.get(base + AGENTS_PATH, params={"limit": 1}, headers=auth(token))
    reply.raise_for_status()
    return reply.json()["total"]


def smoke_get(base: str, token: str) -> None:
    """The list must be a 200 AgentList holding the seeded page."""
    reply = httpx.get(base + AGENTS_PATH, headers=auth(token))
    if reply.status_code != 200 or not reply.headers["content-type"].startswith("application/json"):
        raise SystemExit(f"GET smoke check: {reply.status_code} {reply.text[:300]}")
    page = AgentList.model_validate(reply.json())
    if len(page.agents) != SEEDED or page.total != SEEDED or page.limit != 100:
        raise SystemExit(f"GET smoke check: {len(page.agents)} agents of {page.total}")


def smoke_post(base: str, token: str) -> None:
    """A create must be a 201 Agent echoing what was sent."""
    body = {"name": "smoke-post", "provider": "echo", "model": "echo", "temperature": 0.5}
    reply = httpx.post(base + AGENTS_PATH, json=body, headers=auth(token))
    if reply.status_code != 201:
        raise SystemExit(f"POST smoke check: {reply.status_code} {reply.text[:300]}")
    agent = Agent.model_validate(reply.json())
    if (agent.name, agent.model, agent.temperature) != ("smoke-post", "echo", 0.5):
        raise SystemExit(f"POST smoke check: unexpected reply {reply.text[:300]}")


# --- wrk ---------------------------------------------------------------------------------


@dataclass
class WrkRun:
    """One wrk measurement."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    seconds: float
    cpu_us: float = 0.0  # the server's CPU time per answered request (user + system)


def run_wrk(
    wrk: str, url: str, token: str, method: str, seconds: float, connections: int, label: str
) -> WrkRun:
    """Load ``url`` for ``seconds``; exits when any reply is not 2xx or any socket failed."""
    command = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(WRK_SCRIPT)]
    env = {**os.environ, "BENCH_METHOD": method, "BENCH_TOKEN": token, "BENCH_RUN": label}
    done = subprocess.run(pinned([*command, url], 1), env=env, capture_output=True, text=True)
    found = re.search(r"^BENCH_RESULT (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or not found:
        raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    result = json.loads(found.group(1))
    failures = {
        key: result[key]
        for key in ("non2xx", "connect_errors", "read_errors", "write_errors")
        if result[key]
    }
    if failures or result["requests"] == 0:
        raise SystemExit(f"{method} {url}: {failures or 'no replies'}:\n{done.stdout}")
    if result["timeouts"]:  # slow replies, not wrong ones: the machine is busy
        print(f"warning: {result['timeouts']} replies took over 2 s ({method} {url})")
    elapsed = result["duration_us"] / 1e6
    return WrkRun(
        rps=result["requests"] / elapsed,
        p50_ms=result["p50_us"] / 1e3,
        p99_ms=result["p99_us"] / 1e3,
        requests=result["requests"],
        seconds=elapsed,
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    wrk: str, server: Server, token: str, method: str, seconds: float, args: argparse.Namespace
) -> WrkRun:
    """One wrk run, with the CPU time the server spent per answered request.

    CPU time per request hardly moves when other processes share the CPU, unlike
    requests per second: it is the steadier number on a busy machine.
    """
    url = server.base + AGENTS_PATH
    before = cpu_seconds(server.process.pid)
    run = run_wrk(wrk, url, token, method, seconds, args.connections, "measure")
    run.cpu_us = (cpu_seconds(server.process.pid) - before) / run.requests * 1e6
    return run


def load(wrk: str, server: Server, token: str, method: str, args: argparse.Namespace) -> WrkRun:
    """Smoke-check, warm up, then measure ``method`` on ``server``."""
    url = server.base + AGENTS_PATH
    (smoke_get if method == "GET" else smoke_post)(server.base, token)
    before = agent_total(server.base, token)
    warm = run_wrk(wrk, url, token, method, WARM_UP_SECONDS, args.connections, "warm")
    measured = measure(wrk, server, token, method, args.duration, args)
    if method == "POST":  # every answered create must have stored an agent
        created = agent_total(server.base, token) - before
        answered = warm.requests + measured.requests
        if not answered <= created <= answered + 2 * args.connections:
            raise SystemExit(f"{server.name}: {answered} creates answered, {created} stored")
    return measured


# --- /health while logins run -----------------------------------------------------------

LOGINS = 20
QUIET_SECONDS = 3


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``samples`` (seconds) in milliseconds."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1e3


async def _health_until(client: httpx.AsyncClient, done: asyncio.Event) -> list[float]:
    """``/health`` back-to-back on one connection until ``done``; each reply's latency."""
    latencies: list[float] = []
    while not done.is_set():
        started = time.perf_counter()
        reply = await client.get("/health")
        latencies.append(time.perf_counter() - started)
        if reply.status_code != 200:
            raise SystemExit(f"/health: {reply.status_code} {reply.text[:300]}")
    return latencies


async def _health_during_logins(base: str) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=base, timeout=120) as health:
        await health.get("/health")  # connect before measuring
        done = asyncio.Event()
        quiet_task = asyncio.create_task(_health_until(health, done))
        await asyncio.sleep(QUIET_SECONDS)
        done.set()
        quiet = await quiet_task

        done = asyncio.Event()
        loaded_task = asyncio.create_task(_health_until(health, done))
        body = {"username": USERNAME, "password": PASSWORD}
        limits = httpx.Limits(max_connections=LOGINS)
        started = time.perf_counter()
        async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as logins:
            replies = await asyncio.gather(
                *(logins.post("/api/v1/auth/login", json=body) for _ in range(LOGINS))
            )
        logins_seconds = time.perf_counter() - started
        done.set()
        loaded = await loaded_task
    failed = [reply.status_code for reply in replies if reply.status_code != 200]
    if failed:
        raise SystemExit(f"logins failed: {failed}")
    return {
        "quiet_p50_ms": percentile(quiet, 0.50),
        "quiet_p99_ms": percentile(quiet, 0.99),
        "quiet_requests": len(quiet),
        "logins_p50_ms": percentile(loaded, 0.50),
        "logins_p99_ms": percentile(loaded, 0.99),
        "logins_requests": len(loaded),
        "logins_seconds": logins_seconds,
    }


def health_during_logins() -> dict[str, float]:
    """Cadre alone: ``/health`` p50/p99 quiet, then while ``LOGINS`` logins run at once."""
    with (
        tempfile.TemporaryDirectory(prefix="cadre-bench-") as tmp,
        # The per-account throttle stays on: right passwords are never throttled by their
        # own concurrency, so all 20 simultaneous logins of the bench user succeed.
        serving("cadre", Path(tmp) / "cadre-logins") as server,
    ):
        login_token(server.base, USERNAME, PASSWORD)  # registers the bench user
        found = asyncio.run(_health_during_logins(server.base))
    p50_ratio = found["logins_p50_ms"] / found["quiet_p50_ms"]
    p99_ratio = found["logins_p99_ms"] / found["quiet_p99_ms"]
    print(
        f"\n/health alone:               p50 {found['quiet_p50_ms']:6.2f} ms  "
        f"p99 {found['quiet_p99_ms']:6.2f} ms  ({found['quiet_requests']} requests)\n"
        f"/health during {LOGINS} logins:    p50 {found['logins_p50_ms']:6.2f} ms  "
        f"p99 {found['logins_p99_ms']:6.2f} ms  ({found['logins_requests']} requests, "
        f"logins took {found['logins_seconds']:.2f} s)\n"
        f"ratio with/without logins:   p50 {p50_ratio:.2f}x  p99 {p99_ratio:.2f}x  "
        f"(load average {os.getloadavg()[0]:.2f})"
    )
    return found


# --- the benchmark -----------------------------------------------------------------------


@dataclass
class Measured:
    """Every round of one server on one endpoint; the best one is reported."""

    runs: list[WrkRun] = field(default_factory=list)

    @property
    def best(self) -> WrkRun:
        return max(self.runs, key=lambda run: run.rps)

    @property
    def spread(self) -> float:
        """How far the worst round fell below the best, as a fraction of the best."""
        rates = [run.rps for run in self.runs]
        return (max(rates) - min(rates)) / max(rates)


def benchmark(args: argparse.Namespace) -> dict[str, dict[str, Measured]]:
    wrk = ensure_wrk()
    if not shutil.which("taskset"):
        print("taskset is missing: servers and wrk are not pinned to separate CPUs")
    busy = os.getloadavg()[0]
    if busy > 0.5:
        print(f"note: load average {busy:.2f} before starting; other work will add noise")
    results = {name: {method: Measured() for method in ENDPOINTS} for name in LIST_SERVERS}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cadre-bench-") as tmp:
        for round_ in range(1, args.rounds + 1):
            for name in LIST_SERVERS:
                with ready_server(name, Path(tmp) / f"{name}-{round_}") as (server, token):
                    for method in ENDPOINTS:
                        run = load(wrk, server, token, method, args)
                        results[name][method].runs.append(run)
                        print(
                            f"round {round_}/{args.rounds}  {LABELS[name]:<9} {method:<4} "
                            f"{run.rps:>7.0f} req/s  p50 {run.p50_ms:6.2f} ms  "
                            f"p99 {run.p99_ms:6.2f} ms  CPU {run.cpu_us:5.0f} µs/req",
                            flush=True,
                        )
    print(f"measured in {time.monotonic() - started:.0f} s")
    return results


def ratios(results: dict[str, dict[str, Measured]], by: str = "rps") -> dict[str, dict[str, float]]:
    """Cadre's throughput over the others': by requests/s, or by CPU time per request."""

    def ratio(method: str, other: str) -> float:
        cadre, them = results["cadre"][method].best, results[other][method].best
        return cadre.rps / them.rps if by == "rps" else them.cpu_us / cadre.cpu_us

    return {
        method: {f"cadre/{other}": ratio(method, other) for other in OTHERS} for method in ENDPOINTS
    }


def print_table(results: dict[str, dict[str, Measured]]) -> None:
    print(
        f"\n{'endpoint':<22}{'server':<11}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'CPU µs/req':>12}{'spread':>8}"
    )
    for method in ENDPOINTS:
        for name in LIST_SERVERS:
            measured = results[name][method]
            run = measured.best
            print(
                f"{method + ' ' + AGENTS_PATH:<22}{LABELS[name]:<11}{run.rps:>8.0f}"
                f"{run.p50_ms:>9.2f}{run.p99_ms:>9.2f}{run.cpu_us:>12.0f}{measured.spread:>8.0%}"
            )
    print()
    by_cpu = ratios(results, by="cpu")
    for method, by_rps in ratios(results).items():
        print(
            f"{method:<5} Cadre/FastAPI {by_rps['cadre/fastapi']:.2f}x   "
            f"Cadre/Starlette {by_rps['cadre/starlette']:.2f}x   "
            f"Cadre/Floor {by_rps['cadre/floor']:.2f}x   "
            f"(by CPU time per request: {by_cpu[method]['cadre/fastapi']:.2f}x, "
            f"{by_cpu[method]['cadre/starlette']:.2f}x, {by_cpu[method]['cadre/floor']:.2f}x)"
        )
    print("spread: how far the slowest round fell below the best one")


def write_json(path: Path, results: dict[str, dict[str, Measured]], args: argparse.Namespace):
    document = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "versions": {name: importlib.metadata.version(name) for name in VERSIONS},
        "options": {
            "duration_s": args.duration,
            "connections": args.connections,
            "rounds": args.rounds,
            "seeded_agents": SEEDED,
        },
        "results": {
            name: {
                method: {
                    **asdict(measured.best),
                    "spread": measured.spread,
                    "rounds": [asdict(run) for run in measured.runs],
                }
                for method, measured in by_method.items()
            }
            for name, by_method in results.items()
        },
        "ratios": ratios(results),
        "ratios_by_cpu_time": ratios(results, by="cpu"),
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"results written to {path}")


# --- profiling ---------------------------------------------------------------------------

UVICORN = "uvicorn + event loop"
OUTER = "Starlette outer app"
CADRE_MW = "Cadre middleware (request id, metrics, body limit)"
RATE = "rate limiting (limits)"
CNX_MW = "Connexion middleware stack"
ROUTING = "routing (Starlette router + Connexion)"
SECURITY = "Connexion security"
JWT = "JWT check (cadre.auth + PyJWT)"
VALIDATION = "request validation (jsonschema)"
DECORATORS = "handler binding + Connexion response shaping"
APP_CODE = "handlers + storage (Cadre code)"
DB = "Peewee + SQLite"
PYDANTIC = "pydantic models (build + dump)"
JSON_CODEC = "JSON encode/decode"
OTHER = "other (stdlib, unattributed)"

# (path prefix, layer), first match wins; paths are relative to site-packages, the
# standard library or the repository. None: a helper whose caller decides the layer.
LAYER_RULES: tuple[tuple[str, str | None], ...] = (
    ("jwt/", JWT),
    ("cadre/auth.py", JWT),
    ("peewee.py", DB),
    ("playhouse/", DB),
    ("sqlite3/", DB),
    ("pydantic", PYDANTIC),
    ("models_gen/", PYDANTIC),
    ("orjson", JSON_CODEC),
    ("json/", JSON_CODEC),
    ("cadre/connexion/jsonifier.py", JSON_CODEC),
    ("connexion/jsonifier.py", JSON_CODEC),
    ("jsonschema", VALIDATION),  # jsonschema_rs too
    ("referencing/", VALIDATION),
    ("rpds", VALIDATION),
    ("cadre/connexion/validation.py", VALIDATION),
    ("connexion/validators/", VALIDATION),
    ("connexion/json_schema.py", VALIDATION),
    ("connexion/middleware/request_validation.py", VALIDATION),
    ("connexion/middleware/response_validation.py", VALIDATION),
    ("connexion/middleware/security.py", SECURITY),
    ("cadre/connexion/security.py", SECURITY),
    ("connexion/security.py", SECURITY),
    ("connexion/middleware/routing.py", ROUTING),
    ("cadre/connexion/routing.py", ROUTING),
    ("starlette/routing.py", ROUTING),
    ("connexion/utils.py", None),
    ("connexion/decorators/", DECORATORS),
    ("connexion/uri_parsing.py", DECORATORS),
    ("connexion/lifecycle.py", DECORATORS),
    ("connexion/operations/", DECORATORS),
    ("connexion/apps/", DECORATORS),
    ("connexion/context.py", DECORATORS),
    ("cadre/connexion/app.py", DECORATORS),
    ("cadre/connexion/binding.py", DECORATORS),
    ("connexion/", CNX_MW),
    ("cadre/middleware/rate_limit.py", RATE),
    ("limits/", RATE),
    ("cadre/middleware/", CADRE_MW),
    ("cadre/context.py", CADRE_MW),
    ("prometheus_client/", CADRE_MW),
    ("starlette/applications.py", OUTER),
    ("starlette/middleware/", OUTER),
    ("starlette/_exception_handler.py", OUTER),
    ("handlers/", APP_CODE),
    ("storage/", APP_CODE),
    ("cadre/", APP_CODE),
    ("uvicorn/", UVICORN),
    ("httptools/", UVICORN),
    ("uvloop/", UVICORN),
    ("asyncio/", UVICORN),
)
LIBRARY_ROOTS = sorted(
    {str(ROOT), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["stdlib"]},
    key=len,
    reverse=True,
)


def short_path(path: str) -> str:
    """``path`` relative to the repository, site-packages or the standard library."""
    for prefix in LIBRARY_ROOTS:
        if path.startswith(prefix):
            return path[len(prefix) :].lstrip("/")
    return path


def layer_of(path: str) -> str | None:
    short = short_path(path)
    return next((layer for prefix, layer in LAYER_RULES if short.startswith(prefix)), None)


@dataclass
class Profile:
    """Samples by function: where each one was running (self) and on the stack (cumulative)."""

    samples: int = 0
    self_counts: Counter[str] = field(default_factory=Counter)
    cumulative: Counter[str] = field(default_factory=Counter)
    layers: Counter[str] = field(default_factory=Counter)
    other_threads: int = 0  # samples of threads besides the event loop's (mostly idle waits)


# Frames every sample passes through (process start-up, the event loop's run): left out
# of the cumulative listing, where they would only say "100 %".
ROOT_FRAMES = (
    "<",
    "click/",
    "runpy",
    "asyncio/runners.py",
    "asyncio/events.py",
    "uvicorn/main.py",
    "uvicorn/server.py",
    "uvicorn/_compat.py",
    "uvicorn/__main__.py",
)
# py-spy pauses the server for each sample (its --nonblocking mode tears stacks): a few
# hundred samples a second cost the server about 1 %.
SAMPLE_RATE = 200
FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^()]*)\)$")


def parse_folded(text: str) -> Profile:
    """py-spy's raw output: one ``frame;frame;…;leaf count`` line per distinct stack."""
    profile = Profile()
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = []
        for frame in stack.split(";"):
            found = FRAME.match(frame)
            function, path = (found["function"], found["path"]) if found else (frame, "")
            frames.append((short_path(path), function, layer_of(path)))
        if frames[0][0] == "threading.py" and frames[0][1].endswith("_bootstrap"):
            profile.other_threads += count
            continue
        profile.samples += count
        profile.self_counts[f"{frames[-1][1]} ({frames[-1][0]})"] += count
        on_stack = {f"{function} ({path})" for path, function, _ in frames}
        for name in on_stack - {f"{f} ({p})" for p, f, _ in frames if p.startswith(ROOT_FRAMES)}:
            profile.cumulative[name] += count
        # The innermost frame with a layer decides: a stdlib helper counts for its caller.
        layer = next((layer for _, _, layer in reversed(frames) if layer), OTHER)
        profile.layers[layer] += count
    return profile


def print_profile(title: str, profile: Profile, run: WrkRun, top: int) -> None:
    total = profile.samples or 1
    per_request_us = run.cpu_us
    print(f"\n=== {title}: {profile.samples} samples at {run.rps:.0f} req/s under load")
    if profile.other_threads:
        print(f"  ({profile.other_threads} samples of other, idle threads left out)")
    print(f"\n  self time by layer (µs: its share of {per_request_us:.0f} µs CPU per request)")
    for layer, count in profile.layers.most_common():
        share = count / total
        print(f"  {share:6.1%} {share * per_request_us:7.0f} µs  {layer}")
    for heading, counter in (("cumulative", profile.cumulative), ("self", profile.self_counts)):
        print(f"\n  top {top} functions by {heading} time")
        for name, count in counter.most_common(top):
            print(f"  {count / total:6.1%}  {name}")


def ensure_py_spy() -> str | None:
    """py-spy's path, installed with pip when missing; None when it cannot be had."""
    found = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if found:
        return found
    print("py-spy is missing: running pip install py-spy", flush=True)
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "py-spy"])
    if installed.returncode != 0:
        return None
    return shutil.which("py-spy", path=str(Path(sys.executable).parent))


def profile_with_py_spy(py_spy: str, args: argparse.Namespace, out: Path) -> bool:
    """Sample Cadre's server process under wrk load; False when py-spy cannot attach."""
    wrk = ensure_wrk()
    with ready_server("cadre", out / "cadre-profile") as (server, token):
        url = server.base + AGENTS_PATH
        for method in ENDPOINTS:
            (smoke_get if method == "GET" else smoke_post)(server.base, token)
            run_wrk(wrk, url, token, method, WARM_UP_SECONDS, args.connections, "warm")
            folded = out / f"cadre-{method.lower()}.folded"
            sampler = subprocess.Popen(
                pinned(
                    [
                        *(py_spy, "record", "--pid", str(server.process.pid)),
                        *("--duration", str(args.duration), "--rate", str(SAMPLE_RATE)),
                        *("--format", "raw", "--full-filenames", "--nolineno"),
                        *("--output", str(folded)),
                    ],
                    1,
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            time.sleep(0.5)  # let py-spy attach before the load starts
            run = measure(wrk, server, token, method, args.duration, args)
            output, _ = sampler.communicate(timeout=args.duration + 30)
            if sampler.returncode != 0 or not folded.exists():
                print(f"py-spy could not sample the server:\n{output}")
                return False
            title = f"Cadre {method} {AGENTS_PATH} (py-spy, live server)"
            print_profile(title, parse_folded(folded.read_text()), run, args.top)
    print(f"\nfolded stacks kept in {out} (flamegraph.pl or speedscope read them)")
    return True


async def _drive(method: str, seconds: float, data_dir: Path) -> tuple[cProfile.Profile, float]:
    """Cadre in this process, called through httpx's ASGI transport, profiled for ``seconds``."""
    from cadre.app import create_app

    settings = Settings(
        _env_file=None,
        data_dir=data_dir,
        secret_key=SECRET,
        log_level="WARNING",
        validate_responses=False,
        rate_limit_anonymous=UNLIMITED,
        rate_limit_authenticated=UNLIMITED,
        rate_limit_premium=UNLIMITED,
    )
    app = create_app(settings)
    profiler = cProfile.Profile()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            body = {"email": f"{USERNAME}@example.com", "username": USERNAME, "password": PASSWORD}
            await client.post("/api/v1/auth/register", json=body)
            login = await client.post(
                "/api/v1/auth/login", json={"username": USERNAME, "password": PASSWORD}
            )
            client.headers.update(auth(login.json()["access_token"]))
            for i in range(SEEDED):
                await client.post(AGENTS_PATH, json={"name": f"agent-{i:03d}"})

            async def one(n: int) -> None:
                if method == "GET":
                    reply = await client.get(AGENTS_PATH)
                else:
                    reply = await client.post(AGENTS_PATH, json={"name": f"bench-{n}"})
                if reply.status_code not in (200, 201):
                    raise SystemExit(f"{method}: {reply.status_code} {reply.text[:300]}")

            for n in range(200):  # warm-up
                await one(n)
            count, started = 0, time.perf_counter()
            profiler.enable()
            while time.perf_counter() - started < seconds:
                await one(10_000 + count)
                count += 1
            profiler.disable()
            rate = count / (time.perf_counter() - started)
    return profiler, rate


DRIVER = ("httpx/", "httpcore/", "anyio/", "scripts/bench.py")
NOT_DRIVER = r"^(?!.*(httpx|httpcore|anyio|bench\.py))"


def _layers_of(stats: pstats.Stats) -> Counter[str]:
    """Self time by layer; a built-in's (no file) is shared among its callers' layers."""
    layers: Counter[str] = Counter()
    for (path, _line, _name), (_cc, _nc, self_time, _ct, callers) in stats.stats.items():  # type: ignore[attr-defined]
        if short_path(path).startswith(DRIVER):
            continue  # the client driving the app, not the server
        if path != "~" or not callers:
            layers[layer_of(path) or OTHER] += self_time
            continue
        spent = sum(timing[3] for timing in callers.values()) or 1.0
        for (caller_path, _, _), timing in callers.items():
            if not short_path(caller_path).startswith(DRIVER):
                layers[layer_of(caller_path) or OTHER] += self_time * timing[3] / spent
    return layers


def profile_in_process(args: argparse.Namespace, out: Path) -> None:
    """The fallback: cProfile around an in-process ASGI driver (httpx's share is left out)."""
    for method in ENDPOINTS:
        profiler, rate = asyncio.run(_drive(method, args.duration, out / f"inproc-{method}"))
        stats = pstats.Stats(profiler)
        layers = _layers_of(stats)
        total = sum(layers.values()) or 1.0
        print(f"\n=== Cadre {method} {AGENTS_PATH} (cProfile, in-process, {rate:.0f} req/s)")
        print("\n  self time by layer (the client's share left out)")
        for layer, seconds in layers.most_common():
            print(f"  {seconds / total:6.1%}  {layer}")
        stats.sort_stats("cumulative").print_stats(NOT_DRIVER, args.top)
        stats.sort_stats("tottime").print_stats(NOT_DRIVER, args.top)


def profile(args: argparse.Namespace) -> None:
    keep = args.profile_out
    with tempfile.TemporaryDirectory(prefix="cadre-profile-") as tmp:
        out = keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        py_spy = None if args.profiler == "cprofile" else ensure_py_spy()
        if py_spy and profile_with_py_spy(py_spy, args, out):
            return
        if args.profiler == "py-spy":
            raise SystemExit("py-spy is not available here")
        print("profiling in-process with cProfile instead")
        profile_in_process(args, out)


# --- entry point -------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved; the best is reported")
    parser.add_argument(
        "--json",
        type=Path,
        nargs="?",
        const=Path("bench-results.json"),
        metavar="PATH",
        help="also write the results as JSON (default path: bench-results.json)",
    )
    parser.add_argument(
        "--cadre-http",
        default="cadre.server:HttpProtocol",
        help="uvicorn --http for Cadre (httptools: without cadre serve's head limits)",
    )
    parser.add_argument(
        "--logins-only",
        action="store_true",
        help=f"only measure /health while {LOGINS} logins run",
    )
    parser.add_argument("--profile", action="store_true", help="profile Cadre instead")
    parser.add_argument("--profiler", choices=("auto", "py-spy", "cprofile"), default="auto")
    parser.add_argument("--profile-out", type=Path, help="keep the profiles in this directory")
    parser.add_argument("--top", type=int, default=30, help="functions listed per profile")
    args = parser.parse_args()
    SERVER_OPTIONS["cadre"][1] = args.cadre_http
    if args.profile:
        profile(args)
        return
    if args.logins_only:
        health_during_logins()
        return
    results = benchmark(args)
    print_table(results)
    health_during_logins()
    if args.json:
        write_json(args.json, results, args)


if __name__ == "__main__":
    main()
