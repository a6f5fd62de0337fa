"""Resolve operationIds to handlers, and turn what handlers return into JSON replies.

Handlers return ``(model, status)`` with a pydantic model from ``models_gen``;
the model serialises itself (pydantic-core, straight to bytes), which is
faster than dumping to a dict and encoding that. Errors never pass through
here: they are raised and rendered by ``cadre.problems``. Naming the content
type also avoids Connexion's failure on operations that declare both JSON and
problem+json replies (connexion issue 1956).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from connexion.resolver import Resolver
from pydantic import BaseModel
from starlette.responses import Response

Reply = tuple[BaseModel | dict[str, Any], int]
JSON_HEADERS = {"Content-Type": "application/json"}


def json_replies(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(handler)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        reply = await handler(*args, **kwargs)
        if isinstance(reply, tuple) and len(reply) == 2 and isinstance(reply[0], BaseModel):
            body, status = reply
            return Response(body.model_dump_json(), status, media_type="application/json")
        if isinstance(reply, tuple) and len(reply) == 2 and isinstance(reply[0], dict):
            return reply[0], reply[1], JSON_HEADERS
        if reply == (None, 204):
            return Response(status_code=204)  # no body, so no content type either
        return reply

    return wrapper


class CadreResolver(Resolver):
    def resolve_function_from_operation_id(self, operation_id: str) -> Callable[..., Any]:
        return json_replies(super().resolve_function_from_operation_id(operation_id))
