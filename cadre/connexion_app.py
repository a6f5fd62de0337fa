"""Connexion's AsyncApp, without the work it repeats on every request.

For every request Connexion builds a new decorator chain around the handler
(inspecting its signature, wrapping it three times) and a new URI parser for
the operation. Neither depends on the request, so here both are built once per
operation. Written against Connexion 3.3's AsyncApp internals (pinned in
pyproject.toml); tests/test_spec.py exercises every operation through it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from connexion import AsyncApp
from connexion.apps.asynchronous import AsyncApi, AsyncASGIApp, AsyncOperation
from connexion.context import operation, receive, scope
from connexion.decorators import StarletteDecorator
from connexion.lifecycle import ConnexionRequest

from cadre.validation import PARSED_BODY


class _Request(ConnexionRequest):
    """Hands the handler the body the request validator already parsed."""

    async def json(self) -> Any:
        parsed = self.scope.get(PARSED_BODY, _UNPARSED)
        return await super().json() if parsed is _UNPARSED else parsed


_UNPARSED = object()


class _OnceDecorator(StarletteDecorator):
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


class CadreConnexionApp(AsyncApp):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._middleware_app = _ASGIApp()
        self.middleware.app = self._middleware_app
