"""Connexion's AsyncApp, without the work it repeats on every request.

Connexion routes, secures and validates each request in a stack of ASGI
middleware built from ``openapi.yaml``, and ``AsyncApp.add_middleware`` and the
``middlewares`` argument are its extension points. Per request, though, its
stock stack rebuilds what only depends on the operation: a decorator chain
around the handler, URI parsers and validators, the token-info function's
signature. Cadre's stack is Connexion's with those parts built once:

* handlers are called by ``cadre.connexion.binding.Binder`` instead of the decorator
  chain, with the app's ``Services`` injected by parameter name;
* request validation is ``cadre.connexion.validation.ValidationMiddleware``;
* the OAuth2 check is ``cadre.connexion.security.OAuth2Handler``, on the app's tokens;
* the Swagger UI middleware looks at its own paths only;
* routing finds paths without parameters by a dict lookup (``routing.Routing``);
* the lifespan middleware is left out (the outer app owns the lifespan).
"""

from __future__ import annotations

import functools
from typing import Any

from connexion import AsyncApp
from connexion.apps.asynchronous import AsyncApi, AsyncASGIApp, AsyncOperation
from connexion.middleware.context import ContextMiddleware
from connexion.middleware.exceptions import ExceptionMiddleware
from connexion.middleware.response_validation import ResponseValidationMiddleware
from connexion.middleware.security import SecurityMiddleware
from connexion.middleware.server_error import ServerErrorMiddleware
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from connexion.operations import AbstractOperation
from starlette.types import ASGIApp, Receive, Scope, Send

from cadre.connexion.binding import Binder
from cadre.connexion.routing import Routing
from cadre.connexion.security import security_map
from cadre.connexion.validation import ValidationMiddleware
from cadre.services import Services


class Operation(AsyncOperation):
    """An operation whose handler is called through its ``Binder``."""

    binder: Binder

    @classmethod
    def from_operation(  # type: ignore[override]
        cls,
        operation: AbstractOperation,
        *,
        pythonic_params: bool,
        jsonifier: Any,
        services: Services,
    ) -> Operation:
        routed = super().from_operation(
            operation, pythonic_params=pythonic_params, jsonifier=jsonifier
        )
        routed.binder = Binder(
            operation,
            operation.function,
            pythonic_params=pythonic_params,
            jsonifier=jsonifier,
            services=services,
        )
        return routed  # type: ignore[return-value]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        await self.binder(scope, receive, send)


class _Api(AsyncApi):
    def __init__(self, *args: Any, services: Services, **kwargs: Any) -> None:
        self.services = services  # before Connexion's __init__ makes the operations
        super().__init__(*args, **kwargs)

    def make_operation(self, op: Any) -> AsyncOperation:
        return Operation.from_operation(
            op,
            pythonic_params=self.pythonic_params,
            jsonifier=self.jsonifier,
            services=self.services,
        )


class _ASGIApp(AsyncASGIApp):
    api_cls = _Api

    def __init__(self, services: Services) -> None:
        super().__init__()
        self.services = services

    def add_api(self, *args: Any, **kwargs: Any) -> Any:
        return super().add_api(*args, services=self.services, **kwargs)


class SwaggerUI(SwaggerUIMiddleware):
    """Connexion's Swagger UI, consulted only for the paths it serves (``/docs``, the spec)."""

    def __init__(self, app: ASGIApp, prefixes: tuple[str, ...]) -> None:
        super().__init__(app)
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def middleware_stack(
    *, docs_prefixes: tuple[str, ...], validate_responses: bool, rate_limit: Any = None
) -> list[Any]:
    """Connexion's default stack with Cadre's parts; ``rate_limit`` runs after security."""
    return [
        ServerErrorMiddleware,
        ExceptionMiddleware,
        functools.partial(SwaggerUI, prefixes=docs_prefixes),
        Routing,
        SecurityMiddleware,
        *([rate_limit] if rate_limit is not None else []),
        ValidationMiddleware,
        *([ResponseValidationMiddleware] if validate_responses else []),
        ContextMiddleware,
    ]


class CadreConnexionApp(AsyncApp):
    """Connexion's app on Cadre's stack, serving one app's ``services``."""

    def __init__(self, *args: Any, services: Services, **kwargs: Any) -> None:
        super().__init__(*args, security_map=security_map(services.tokens), **kwargs)
        self.services = services
        self._middleware_app = _ASGIApp(services)
        self.middleware.app = self._middleware_app
