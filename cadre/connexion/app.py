"""Connexion's AsyncApp, without the work it repeats on every request.

Connexion routes, secures and validates each request in a stack of ASGI
middleware built from ``openapi.yaml``, and ``AsyncApp.add_middleware`` and the
``middlewares`` argument are its extension points. Per request, though, its
stock stack rebuilds what only depends on the operation: a decorator chain
around the handler, URI parsers and validators, the token-info function's
signature. Cadre's stack is Connexion's with those parts built once:

* handlers are called by ``cadre.connexion.binding.Binder`` instead of the decorator chain;
* request validation is ``cadre.connexion.validation.ValidationMiddleware``;
* the Swagger UI middleware looks at its own paths only;
* routing finds paths without parameters by a dict lookup;
* the lifespan middleware is left out (the outer app owns the lifespan).

Written against Connexion 3.3's internals (pinned in pyproject.toml); the whole
test suite runs every operation through it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from connexion import AsyncApp, security
from connexion.apps.asynchronous import AsyncApi, AsyncASGIApp, AsyncOperation
from connexion.exceptions import OAuthResponseProblem
from connexion.middleware.abstract import ROUTING_CONTEXT
from connexion.middleware.context import ContextMiddleware
from connexion.middleware.exceptions import ExceptionMiddleware
from connexion.middleware.response_validation import ResponseValidationMiddleware
from connexion.middleware.routing import RoutingMiddleware, RoutingOperation
from connexion.middleware.security import SecurityMiddleware
from connexion.middleware.server_error import ServerErrorMiddleware
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from connexion.operations import AbstractOperation
from connexion.security import NO_VALUE, OAuthSecurityHandler
from starlette._utils import get_route_path
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from cadre.connexion.binding import Binder
from cadre.connexion.validation import ValidationMiddleware


class _Operation(AsyncOperation):
    binder: Binder

    @classmethod
    def from_operation(
        cls, operation: AbstractOperation, *, pythonic_params: bool, jsonifier: Any
    ) -> _Operation:
        routed = super().from_operation(
            operation, pythonic_params=pythonic_params, jsonifier=jsonifier
        )
        routed.binder = Binder(
            operation, operation.function, pythonic_params=pythonic_params, jsonifier=jsonifier
        )
        return routed  # type: ignore[return-value]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        await self.binder(scope, receive, send)


class _Api(AsyncApi):
    def make_operation(self, op: Any) -> AsyncOperation:
        return _Operation.from_operation(
            op, pythonic_params=self.pythonic_params, jsonifier=self.jsonifier
        )


class _ASGIApp(AsyncASGIApp):
    api_cls = _Api


class _OAuth2Handler(OAuthSecurityHandler):
    """Connexion's OAuth2 check without its per-request ``inspect.signature`` calls.

    Connexion inspects the token-info function on every request to learn whether
    it takes ``required_scopes`` or ``request``; Cadre's (``cadre.auth.token_info``)
    takes only the token, so it is simply called.
    """

    def _generic_check(self, func: Callable[..., Any], exception_msg: str) -> Any:
        async def wrapper(request: Any, *args: Any, required_scopes: Any = None) -> Any:
            token_info = func(*args)
            while asyncio.iscoroutine(token_info):
                token_info = await token_info
            if token_info is NO_VALUE:
                return NO_VALUE
            if token_info is None:
                raise OAuthResponseProblem(detail=exception_msg)
            return token_info

        return wrapper


SECURITY_HANDLERS = {**security.SECURITY_HANDLERS, "oauth2": _OAuth2Handler}


class _SwaggerUI(SwaggerUIMiddleware):
    """Connexion's Swagger UI, consulted only for the paths it serves (``/docs``, the spec)."""

    def __init__(self, app: ASGIApp, prefixes: tuple[str, ...]) -> None:
        super().__init__(app)
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class _Routing(RoutingMiddleware):
    """Connexion's routing, with each parameterless path's operation found by one dict lookup.

    Starlette's router tries the routes' patterns one by one. Which operation a
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
                if method.upper() in _METHODS:
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
            routing = self.static.get((scope["method"], get_route_path(scope)))
            if routing is not None:  # what RoutingOperation hands on, without the router
                forwarded = dict(scope)
                forwarded.setdefault("path_params", {})
                extensions = forwarded.setdefault("extensions", {})
                extensions.setdefault(ROUTING_CONTEXT, {}).update(routing)
                await self.app(forwarded, receive, send)
                return
        await super().__call__(scope, receive, send)


_METHODS = {"GET", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "TRACE"}


def middleware_stack(
    *, docs_prefixes: tuple[str, ...], validate_responses: bool, rate_limit: Any = None
) -> list[Any]:
    """Connexion's default stack with Cadre's parts; ``rate_limit`` runs after security."""
    return [
        ServerErrorMiddleware,
        ExceptionMiddleware,
        functools.partial(_SwaggerUI, prefixes=docs_prefixes),
        _Routing,
        SecurityMiddleware,
        *([rate_limit] if rate_limit is not None else []),
        ValidationMiddleware,
        *([ResponseValidationMiddleware] if validate_responses else []),
        ContextMiddleware,
    ]


class CadreConnexionApp(AsyncApp):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, security_map=SECURITY_HANDLERS, **kwargs)
        self._middleware_app = _ASGIApp()
        self.middleware.app = self._middleware_app
