"""JSON replies through orjson: several times faster than the standard library's encoder."""

from __future__ import annotations

from typing import Any

import orjson
from connexion.jsonifier import Jsonifier


class _OrjsonModule:
    """The slice of the ``json`` module's interface Connexion's Jsonifier calls."""

    @staticmethod
    def dumps(data: Any, **_: Any) -> str:
        return orjson.dumps(data).decode()

    @staticmethod
    def loads(data: str | bytes, **_: Any) -> Any:
        return orjson.loads(data)


jsonifier = Jsonifier(_OrjsonModule)
