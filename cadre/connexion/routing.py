"""Connexion's routing, with each parameterless path's operation found by one dict lookup."""

from __future__ import annotations

from typing import Any

from connexion.middleware.abstract import ROUTING_CONTEXT
from connexion.middleware.routing import RoutingMiddleware, RoutingOperation
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

METHODS = {"GET", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "TRACE"}


def route_path(scope: Scope) -> str:
    """The path the router matches: ``path`` without the ``root_path`` it is mounted under."""
    path: str = scope["path"]
    root_path = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        return path
    rest = path[len(root_path) :]
    return rest if rest == "" or rest.startswith("/") else path


class Routing(RoutingMiddleware):
    """Starlette's router tries the routes' patterns one by one. Which operation a
    path without parameters reaches is fixed, so it is asked once, at start-up,
    for each such path and method, and the answer (the same router's, so the same
    route order and precedence) kept; every other request is routed as before.
    """

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        self.static: dict[tuple[str, str], dict[str, Any]] = {}

    def add_api(self, specification: Any, base_path: str | None = None, **kwargs: Any) -> None:
        super().add_api(specification, base_path=base_path, **kwargs)
        self.static.clear()
        for path, item in specification.get("paths", {}).items():
            if "{" in path:
                continue
            for method in item:
                if method.upper() in METHODS:
                    found = self._route_of(method.upper(), f"{base_path or ''}{path}")
                    if found is not None:
                        self.static[(method.upper(), f"{base_path or ''}{path}")] = found

    def _route_of(self, method: str, path: str) -> dict[str, Any] | None:
        """The routing context Connexion would attach, if ``path`` reaches an operation."""
        scope: dict[str, Any] = {
            "type": "http",
            "method": method,
            "path": path,
            "root_path": "",
            "headers": [],
        }
        router = self.router
        while True:
            for route in router.routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope = {**scope, **child}
                    break
            else:
                return None
            if child.get("path_params"):
                return None
            if isinstance(route, Mount):
                router = route.app
                continue
            operation = route.endpoint
            if not isinstance(operation, RoutingOperation) or operation.operation_id is None:
                return None
            return {
                "api_base_path": scope.get("route_root_path", scope.get("root_path", "")),
                "operation_id": operation.operation_id,
            }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            routing = self.static.get((scope["method"], route_path(scope)))
            if routing is not None:  # what RoutingOperation hands on, without the router
                forwarded = dict(scope)
                forwarded.setdefault("path_params", {})
                extensions = forwarded.setdefault("extensions", {})
                extensions.setdefault(ROUTING_CONTEXT, {}).update(routing)
                await self.app(forwarded, receive, send)
                return
        await super().__call__(scope, receive, send)
