"""Connexion's AsyncApp, without the work it repeats on every request.

For every request Connexion builds a new decorator chain around the handler
(inspecting its signature, wrapping it three times) and a new URI parser for
the operation, and inspects the token-info function's signature twice. None
of it depends on the request, so here it is done once. Written against
Connexion 3.3's internals (pinned in pyproject.toml); the whole test suite
runs every operation through it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from connexion import AsyncApp, security
from connexion.apps.asynchronous import AsyncApi, AsyncASGIApp, AsyncOperation
from connexion.context import operation, receive, scope
from connexion.decorators import StarletteDecorator
from connexion.decorators.parameter import AsyncParameterDecorator
from connexion.exceptions import OAuthResponseProblem
from connexion.lifecycle import ConnexionRequest
from connexion.security import NO_VALUE, OAuthSecurityHandler

from cadre.validation import PARSED_BODY


class _Request(ConnexionRequest):
    """Hands the handler the body the request validator already parsed."""

    async def json(self) -> Any:
        parsed = self.scope.get(PARSED_BODY, _UNPARSED)
        return await super().json() if parsed is _UNPARSED else parsed


_UNPARSED = object()


class _Parameters(AsyncParameterDecorator):
    """Parameter names are few and fixed: rename each once, not per request."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sanitize_fn = functools.lru_cache(maxsize=1024)(self.sanitize_fn)


class _OnceDecorator(StarletteDecorator):
    _parameter_decorator_cls = _Parameters  # type: ignore[assignment]

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        decorated = self.decorate(function)
        parsers: dict[int, Any] = {}

        @functools.wraps(function)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            parser = parsers.get(id(operation.parameters))
            if parser is None:
                parser = parsers[id(operation.parameters)] = self.uri_parser
            request = _Request(scope, receive, uri_parser=parser)
            return await decorated(request)

        return wrapper


class _Operation(AsyncOperation):
    @functools.cached_property
    def fn(self) -> Callable[..., Any]:  # type: ignore[override]
        decorator = _OnceDecorator(pythonic_params=self.pythonic_params, jsonifier=self.jsonifier)
        return decorator(self._fn)


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


class CadreConnexionApp(AsyncApp):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, security_map=SECURITY_HANDLERS, **kwargs)
        self._middleware_app = _ASGIApp()
        self.middleware.app = self._middleware_app
