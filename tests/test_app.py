"""The app factory: what building an app costs and loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from connexion.exceptions import InvalidSpecification
from connexion.spec import Specification

from cadre.spec_docs import authored_spec

ROOT = Path(__file__).resolve().parent.parent


def test_embedded_server_loads_neither_redis_nor_procrastinate(tmp_path: Path) -> None:
    """Without CADRE_REDIS_URL and on SQLite, a start skips both clients' imports (0.15 s),
    and says nothing about the test client Connexion imports."""
    script = (
        "import sys\n"
        "from cadre.app import create_app\n"
        "create_app()\n"
        "print(sorted(m for m in ('redis', 'procrastinate') if m in sys.modules))\n"
    )
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CADRE_")}
    environment["CADRE_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "Warning" not in done.stderr


def test_each_document_is_validated_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    import connexion.spec

    calls: list[object] = []
    original = connexion.spec.create_spec_validator

    def counting(spec: object) -> object:
        calls.append(spec)
        return original(spec)

    monkeypatch.setattr(connexion.spec, "create_spec_validator", counting)
    spec = authored_spec()
    spec["info"]["title"] = "a document no other test built"
    Specification.load(spec)
    Specification.load(authored_spec() | {"info": spec["info"]})
    assert len(calls) == 1


def test_an_invalid_document_is_still_refused_after_a_valid_one() -> None:
    Specification.load(authored_spec())
    broken = authored_spec()
    broken["paths"]["/health"]["get"]["responses"] = "not a mapping"
    with pytest.raises(InvalidSpecification):
        Specification.load(broken)
    with pytest.raises(InvalidSpecification):  # and again: a failure is not remembered
        Specification.load(broken)
