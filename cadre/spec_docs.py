"""The API description as written: openapi.yaml, served as JSON with its ``$ref``s intact.

Connexion's own ``/openapi.json`` is its working copy, every ``$ref`` inlined and
``servers`` rewritten, so generated clients lose every named type. Cadre serves
the authored document instead (``GET /openapi.json`` and ``/api/v1/openapi.json``).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import orjson
import yaml

SPEC_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"


@cache
def authored_json() -> bytes:
    """openapi.yaml as JSON bytes, read once."""
    with SPEC_PATH.open() as handle:
        return orjson.dumps(yaml.safe_load(handle))
