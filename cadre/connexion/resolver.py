"""From an operation of openapi.yaml to its handler: ``listAgents`` tagged ``agents`` is
``handlers.agents.list_agents``.

operationIds are short camelCase names that generated clients turn into method
names; the Python function is found by one rule: the module is the operation's
first tag, the function its operationId in snake_case. Connexion keeps the
operationId itself as the operation's id (routing, metrics and rate-limit labels).
"""

from __future__ import annotations

import re
from typing import Any

from connexion.exceptions import ResolverError
from connexion.resolver import Resolution, Resolver

HANDLERS_PACKAGE = "handlers"
CAMEL_CASE = re.compile(r"^[a-z][a-zA-Z0-9]*$")


def snake_case(operation_id: str) -> str:
    """``getCostSummary`` -> ``get_cost_summary``; ``getApiHealth`` -> ``get_api_health``."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", operation_id).lower()


def handler_name(operation_id: str, tags: list[str] | None) -> str:
    """The dotted name of the function that serves an operation."""
    if not CAMEL_CASE.match(operation_id or ""):
        raise ResolverError(f"operationId {operation_id!r} is not camelCase")
    if not tags:
        raise ResolverError(f"operation {operation_id!r} has no tag to name its handler module")
    return f"{HANDLERS_PACKAGE}.{tags[0]}.{snake_case(operation_id)}"


class TagResolver(Resolver):
    """``handlers.<first tag>.<snake_case operationId>``; the operationId stays the id."""

    def resolve(self, operation: Any) -> Resolution:
        operation_id = operation.operation_id
        name = handler_name(operation_id, operation._operation.get("tags"))
        return Resolution(self.resolve_function_from_operation_id(name), operation_id)
