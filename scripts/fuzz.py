"""Run Schemathesis (every phase, every check) against a live, authenticated Cadre.

    python scripts/fuzz.py --max-examples 200     # make fuzz
Exits with Schemathesis's status: 0 only when it found nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from live_server import live_server, login_token, reset_postgres

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-examples", type=int, default=200)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args()
    schemathesis = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "CADRE_RATE_LIMIT_ANONYMOUS": "10000000/hour",
            "CADRE_RATE_LIMIT_AUTHENTICATED": "10000000/hour",
            "CADRE_VALIDATE_RESPONSES": "true",
        }
        database_url = os.environ.get("CADRE_TEST_DATABASE_URL")
        if database_url:  # fuzz the PostgreSQL backend too, from an empty schema
            reset_postgres(database_url)
            env["CADRE_DATABASE_URL"] = database_url
        with live_server(Path(tmp) / "data", **env) as server:
            base = server.url
            token = login_token(base)
            command = [
                schemathesis,
                "run",
                f"{base}/openapi.json",
                "--header",
                f"Authorization: Bearer {token}",
                "--checks",
                "all",
                "--max-examples",
                str(args.max_examples),
                # One worker: with two threads, Hypothesis's lambda-source cache races now
                # and then and Schemathesis reports a "Runtime Error" that is not the API's.
                "--workers",
                "1",
                "--no-color",
            ]
            if args.seed is not None:
                command += ["--seed", str(args.seed)]
            return subprocess.run(command, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
