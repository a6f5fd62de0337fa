"""HTTP benchmark: Cadre against the same endpoints in FastAPI and bare Starlette, in one run.

Each server runs alone on one uvicorn worker (uvloop, httptools, no access log),
pinned to CPU 0 when taskset exists, with wrk on CPU 1. Every server gets its
own fresh SQLite database holding one user with 100 agents. Measured:
GET /api/v1/agents (authenticated, 100 agents per page) and POST /api/v1/agents.

    python scripts/bench.py [--duration 10] [--connections 32] [--rounds 3] [--json out.json]

Servers are measured in interleaved rounds and the median run is reported, so a
burst of load from elsewhere on the machine does not decide the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cadre.auth import TokenService, hash_password  # noqa: E402
from cadre.settings import Settings  # noqa: E402
from scripts.live_server import free_port  # noqa: E402
from storage import agents, db, users  # noqa: E402

SERVERS = {
    "cadre": "cadre.app:create_app",
    "fastapi": "scripts.bench_apps.fastapi_app:create_app",
    "starlette": "scripts.bench_apps.starlette_app:create_app",
}
SECRET = "bench-secret-key-that-is-long-enough-for-every-hs-algorithm-0123456789"


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is missing: installing Debian's package", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    return shutil.which("wrk") or "wrk"


def seed(data_dir: Path) -> str:
    """A fresh database with one user owning 100 agents; returns an access token."""
    settings = Settings(_env_file=None, data_dir=data_dir, secret_key=SECRET)
    database = db.open_database(settings.effective_database_url)
    db.migrate(database)
    user = users.create_user(
        email="bench@example.com",
        username="bench",
        full_name=None,
        password_hash=hash_password("bench-password-1"),
    )
    for i in range(100):
        agents.create_agent(
            user.id, {"name": f"agent-{i}", "provider": "echo", "model": "echo", "temperature": 0.5}
        )
    database.close()
    tokens = TokenService(settings)
    return tokens.issue_access(user.id, "user", ("agents:read", "agents:write"))


@contextmanager
def serving(name: str, data_dir: Path):
    port = free_port()
    env = {
        **os.environ,
        "CADRE_DATA_DIR": str(data_dir),
        "CADRE_SECRET_KEY": SECRET,
        "CADRE_LOG_LEVEL": "WARNING",
        "CADRE_RATE_LIMIT_AUTHENTICATED": "100000000/hour",
        "PYTHONPATH": str(ROOT),
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        SERVERS[name],
        "--factory",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    process = subprocess.Popen(command, env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(f"{base}/api/v1/agents", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def smoke(base: str, token: str) -> None:
    """Never benchmark error replies: both endpoints must answer as specified first."""
    headers = {"Authorization": f"Bearer {token}"}
    page = httpx.get(f"{base}/api/v1/agents", headers=headers)
    assert page.status_code == 200 and len(page.json()["agents"]) == 100, page.text[:300]
    created = httpx.post(
        f"{base}/api/v1/agents", headers=headers, json={"name": "smoke", "provider": "echo"}
    )
    assert created.status_code == 201 and created.json()["name"] == "smoke", created.text[:300]


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def run_wrk(wrk: str, args: argparse.Namespace, url: str, token: str, post: bool) -> dict:
    command = [wrk, "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    if post:
        command += ["-s", str(ROOT / "scripts" / "bench_apps" / "wrk_post.lua")]
    else:
        command += ["-H", f"Authorization: Bearer {token}"]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "1", *command]
    env = {**os.environ, "BENCH_TOKEN": token, "BENCH_RUN": "warm"}
    warm = [c if not c.startswith("-d") else "-d2s" for c in command]
    subprocess.run([*warm, url], env=env, capture_output=True, check=True)
    env["BENCH_RUN"] = "measure"
    output = subprocess.run([*command, url], env=env, capture_output=True, text=True).stdout
    if "Non-2xx" in output:
        raise SystemExit(f"error replies while benchmarking {url}:\n{output}")
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", output, re.MULTILINE))

    def ms(value: str) -> float:
        number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
        return float(number) * UNITS[unit]

    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": ms(latency["50"]),
        "p99_ms": ms(latency["99"]),
    }


def median_run(measured: list[dict]) -> dict:
    """The run with the median throughput: this machine's neighbours make single runs noisy."""
    return sorted(measured, key=lambda r: r["rps"])[len(measured) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved; medians reported")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    wrk = ensure_wrk()
    runs: dict[str, dict[str, list[dict]]] = {n: {"GET": [], "POST": []} for n in SERVERS}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for name in SERVERS:
                data_dir = Path(tmp) / f"{name}-{round_}"
                token = seed(data_dir)
                with serving(name, data_dir) as base:
                    smoke(base, token)
                    url = f"{base}/api/v1/agents"
                    runs[name]["GET"].append(run_wrk(wrk, args, url, token, post=False))
                    runs[name]["POST"].append(run_wrk(wrk, args, url, token, post=True))
            print(f"round {round_ + 1}/{args.rounds} measured", flush=True)
    results = {
        name: {endpoint: median_run(measured) for endpoint, measured in by_endpoint.items()}
        for name, by_endpoint in runs.items()
    }
    print(f"\n{'endpoint':<22}{'server':<11}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for endpoint in ("GET", "POST"):
        for name in SERVERS:
            r = results[name][endpoint]
            label = f"{endpoint} /api/v1/agents"
            print(f"{label:<22}{name:<11}{r['rps']:>9.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}")
    print()
    for endpoint in ("GET", "POST"):
        cadre = results["cadre"][endpoint]["rps"]
        fastapi = cadre / results["fastapi"][endpoint]["rps"]
        starlette = cadre / results["starlette"][endpoint]["rps"]
        print(f"{endpoint:<5} Cadre/FastAPI {fastapi:.2f}x   Cadre/Starlette {starlette:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
