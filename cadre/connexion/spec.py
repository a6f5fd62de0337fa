"""The API document checked against OpenAPI's schema once per process, not once per app.

Connexion's ``Specification`` validates the whole document (OpenAPI 3's JSON Schema,
and every ``default`` against its schema) each time an app is built: 0.15 s of every
start, and of every app the test suite builds. The document is the same file each
time, so each distinct document (after Connexion's defaults are filled in) is
validated once per process; a changed document is validated as before, and an
invalid one still raises ``InvalidSpecification``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from connexion.spec import OpenAPISpecification

_connexion_validate = OpenAPISpecification._validate_spec.__func__  # type: ignore[attr-defined]
_validated: set[bytes] = set()


def _digest(spec: dict[str, Any]) -> bytes | None:
    try:
        return hashlib.sha256(orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)).digest()
    except TypeError:  # a value JSON has no form for (a YAML date): validate every time
        return None


def _validate_once(cls: type[OpenAPISpecification], spec: dict[str, Any]) -> None:
    digest = _digest(spec)
    if digest is not None and digest in _validated:
        return
    _connexion_validate(cls, spec)
    if digest is not None:
        _validated.add(digest)


def install() -> None:
    """Make Connexion's OpenAPI 3 documents validate once per process (idempotent)."""
    OpenAPISpecification._validate_spec = classmethod(_validate_once)  # type: ignore[method-assign,assignment]
