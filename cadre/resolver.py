"""Resolve operationIds to handlers, telling Connexion which content type they return.

Connexion fails a 2xx reply with 500 when an operation declares more than one
content type (here: JSON for success, problem+json for errors) and the handler
does not name one (connexion issue 1956). Errors never pass through handlers, so
a handler returning a dict or list is JSON: this wrapper says so, once, for all.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from connexion.resolver import Resolver

JSON_HEADERS = {"Content-Type": "application/json"}


def with_json_content_type(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(handler)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        reply = await handler(*args, **kwargs)
        if isinstance(reply, tuple) and len(reply) == 2 and isinstance(reply[0], dict | list):
            return reply[0], reply[1], JSON_HEADERS
        return reply

    return wrapper


class CadreResolver(Resolver):
    def resolve_function_from_operation_id(self, operation_id: str) -> Callable[..., Any]:
        return with_json_content_type(super().resolve_function_from_operation_id(operation_id))
