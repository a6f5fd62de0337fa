"""A live Cadre server (``cadre serve`` on a free port) for the generated clients' flows.

On PostgreSQL runs (``CADRE_TEST_DATABASE_URL``) it serves that database, from an empty schema.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.live_server import live_server, reset_postgres
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL

ROOT = Path(__file__).resolve().parent.parent.parent
SPEC = ROOT / "openapi.yaml"


@pytest.fixture(scope="package")
def cadre_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {
        "CADRE_RATE_LIMIT_ANONYMOUS": "100000/hour",
        "CADRE_RATE_LIMIT_AUTHENTICATED": "100000/hour",
        "CADRE_VALIDATE_RESPONSES": "true",
    }
    if TEST_DATABASE_URL:
        reset_postgres(TEST_DATABASE_URL)
        env["CADRE_DATABASE_URL"] = TEST_DATABASE_URL
    if TEST_REDIS_URL:
        env["CADRE_REDIS_URL"] = TEST_REDIS_URL
    with pytest.MonkeyPatch.context() as environment:
        for name in list(os.environ):  # the developer's own settings stay out of the server
            if name.startswith("CADRE_"):
                environment.delenv(name)
        with live_server(tmp_path_factory.mktemp("clients") / "data", **env) as server:
            yield server.url
