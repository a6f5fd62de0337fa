"""The API description as written: openapi.yaml, served as JSON with its ``$ref``s intact.

Connexion's own ``/openapi.json`` is its working copy, every ``$ref`` inlined and
``servers`` rewritten, so generated clients lose every named type. Cadre serves
the authored document instead (``GET /openapi.json`` and ``/api/v1/openapi.json``).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import orjson
import yaml

SPEC_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"


# libyaml's parser when PyYAML was built with it: ten times the pure-Python one's speed,
# which every app start pays (tests build hundreds of apps)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@cache
def authored_json() -> bytes:
    """openapi.yaml as JSON bytes, read and parsed once per process."""
    with SPEC_PATH.open() as handle:
        return orjson.dumps(yaml.load(handle, Loader=_LOADER))


def authored_spec() -> dict[str, Any]:
    """openapi.yaml as a new dict each call: Connexion fills in defaults where it is given."""
    return orjson.loads(authored_json())
