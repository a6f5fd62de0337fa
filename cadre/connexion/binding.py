"""Calling a handler: its arguments from the validated request, its reply sent back.

Connexion's parameter and response decorators work out, on every request, what
only depends on the operation: the handler's signature, which parameters are
path or query ones and how to cast them, their defaults, the body's name,
schema and default. Cadre's ``Binder`` works it out once per operation; per
request it only picks up the values the request validator already parsed and
typed (``cadre.connexion.validation`` leaves them in the scope) and sends the
reply: a model straight from pydantic-core's JSON bytes, a list's ready JSON as it
is (``cadre.replies``), anything else through
Connexion's response logic.

File uploads are not supported, as no operation in ``openapi.yaml`` takes one.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from copy import deepcopy
from typing import Any

from connexion.decorators.parameter import pythonic, sanitized
from connexion.decorators.response import AsyncResponseDecorator
from connexion.frameworks.starlette import Starlette as StarletteFramework
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from connexion.operations import AbstractOperation
from pydantic import BaseModel
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from cadre.connexion.validation import (
    FORM_TYPES,
    PARSED_BODY,
    PARSED_PARAMS,
    content_type_of,
    is_null,
    is_nullable,
)
from cadre.replies import JSONBody
from cadre.services import SERVICE_NAMES, Services

# What handlers return: ``(model, status)`` with a ``models_gen`` model, a list reply
# already encoded (``cadre.replies``), or a dict. Errors are never returned: they are
# raised and rendered by ``cadre.problems``.
Reply = tuple[BaseModel | JSONBody | dict[str, Any], int]
JSON_HEADERS = [(b"content-type", b"application/json")]
CONTEXT_NAME = "context_"  # Connexion's name for the whole security context


def _typed(value: Any, param: dict[str, Any]) -> Any:
    """A parsed value as the handler gets it: the URI parser typed it, ``null`` is None."""
    return None if is_nullable(param) and is_null(value) else value


def _query_defaults(query: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The spec's default of each query parameter that has one."""
    defaults = {}
    for name, param in query.items():
        schema = param.get("schema", {})
        if "default" in param:
            defaults[name] = param["default"]
        elif "default" in schema:
            defaults[name] = schema["default"]
    return defaults


def _json(content: Any) -> bytes | None:
    """The body of a reply the binding sends itself: a model's JSON from pydantic-core,
    or a list's already written; None for anything else."""
    if type(content) is JSONBody:
        return content
    if isinstance(content, BaseModel):
        return content.__pydantic_serializer__.to_json(content)
    return None


class Binder:
    """One operation's handler, with everything about its arguments decided up front.

    A handler gets, each only if it names the parameter:

    * path, query and header parameters of the spec, under their pythonic names
      (``agent_id``, ``all_``, ``Idempotency-Key`` as ``idempotency_key``),
      typed and with the spec's defaults; ``body`` (or the spec's body name);
    * ``user`` and ``token_info`` from the security check (``context_`` for all of it);
    * ``accept``: the request's ``Accept`` header (the spec cannot declare it), for
      operations that answer in more than one media type;
    * the app's services, by field name of ``cadre.services.Services``: ``settings``,
      ``tokens``, ``executor``, ``bus``, ``metrics``, ``db``.

    An ``async def`` handler runs on the event loop; a plain ``def`` one (database work)
    through ``services.db``: inline on SQLite, in the threadpool on PostgreSQL.
    """

    def __init__(
        self,
        operation: AbstractOperation,
        function: Callable[..., Any],
        *,
        pythonic_params: bool,
        jsonifier: Any,
        services: Services,
    ) -> None:
        self.operation = operation
        self.function = function
        unwrapped = inspect.unwrap(function)
        self.is_async = asyncio.iscoroutinefunction(unwrapped)
        # Plain ``def`` handlers do database work: inline on SQLite, in the threadpool on
        # PostgreSQL, as ``cadre.db_calls`` explains (decided from the URL at app build).
        self.sync_calls = services.db
        sanitize = pythonic if pythonic_params else sanitized
        parameters = inspect.signature(unwrapped).parameters.values()
        self.has_kwargs = any(p.kind is p.VAR_KEYWORD for p in parameters)
        self.arguments = frozenset(
            p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        )
        self.wants_context = CONTEXT_NAME in self.arguments
        self.wants_accept = "accept" in self.arguments
        self.services = {
            name: getattr(services, name) for name in SERVICE_NAMES if name in self.arguments
        }

        def wanted(name: str) -> bool:
            return self.has_kwargs or name in self.arguments

        by_location: dict[str, dict[str, dict]] = {"path": {}, "query": {}, "header": {}}
        for param in operation.parameters:
            if param["in"] in by_location:
                by_location[param["in"]][param["name"]] = param
        self.path = {name: (sanitize(name), p) for name, p in by_location["path"].items()}
        self.query = {
            name: (sanitize(name), p)
            for name, p in by_location["query"].items()
            if wanted(sanitize(name))
        }
        self.query_defaults = {
            name: value
            for name, value in _query_defaults(by_location["query"]).items()
            if name in self.query
        }
        self.headers = {
            name.lower().encode("latin-1"): sanitize(name)
            for name in by_location["header"]
            if wanted(sanitize(name))
        }
        self.body_name: str | None = None
        if operation.is_request_body_defined and operation.method.upper() != "TRACE":
            name = sanitize(operation.body_name(""))
            self.body_name = name if wanted(name) else None
        self.body_schemas = {
            mime: definition.get("schema", {})
            for mime, definition in operation.request_body.get("content", {}).items()
        }
        self.sanitize = sanitize
        # Replies other than a ready response (tuples with headers, bytes, dicts) are
        # shaped by Connexion's own response logic.
        self.responses = AsyncResponseDecorator(framework=StarletteFramework, jsonifier=jsonifier)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kwargs = await self.arguments_for(scope, receive)
        if self.is_async:
            reply = await self.function(**kwargs)
        else:
            reply = await self.sync_calls(self.function, **kwargs)
        body = _json(reply[0]) if type(reply) is tuple and len(reply) == 2 else None
        if body is not None:  # the common case, sent as it is
            status = reply[1]
            headers = [(b"content-length", b"%d" % len(body)), *JSON_HEADERS]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        if not isinstance(reply, Response):
            reply = self.response_for(reply)
        await reply(scope, receive, send)

    def response_for(self, reply: Any) -> Response:
        """Anything but a model: Connexion's response logic, with JSON named for dicts."""
        if type(reply) is tuple and len(reply) == 2:
            if isinstance(reply[0], dict):
                # Naming the content type avoids Connexion's failure on operations that
                # declare both JSON and problem+json replies (connexion issue 1956).
                reply = (*reply, {"Content-Type": "application/json"})
            elif reply == (None, 204):
                return Response(status_code=204)  # no body, so no content type either
        if isinstance(reply, ConnexionResponse):
            return StarletteFramework.connexion_to_framework_response(reply)
        return self.responses.build_framework_response(reply)

    async def arguments_for(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        query, path = scope[PARSED_PARAMS]
        kwargs: dict[str, Any] = dict(self.services)
        for name, value in path.items():
            found = self.path.get(name)
            if found is None:
                kwargs[self.sanitize(name)] = value
            else:
                kwargs[found[0]] = _typed(value, found[1])
        if self.query:
            for name, value in {**self.query_defaults, **query}.items():
                found = self.query.get(name)
                if found is not None:
                    kwargs[found[0]] = _typed(value, found[1])
        if self.headers or self.wants_accept:
            for name, value in scope["headers"]:
                argument = self.headers.get(name)
                if argument is not None:
                    kwargs.setdefault(argument, value.decode("latin-1"))
                elif name == b"accept" and self.wants_accept:
                    kwargs["accept"] = value.decode("latin-1")
        if self.body_name is not None:
            kwargs[self.body_name] = await self.body_for(scope, receive)
        context = scope.get("extensions", {}).get("connexion_context", {})
        for key, value in context.items():
            if self.has_kwargs or key in self.arguments:
                kwargs[key] = value
        if self.wants_context:
            kwargs[CONTEXT_NAME] = context
        return kwargs

    async def body_for(self, scope: Scope, receive: Receive) -> Any:
        """The validated body, or the schema's default when none came; form bodies typed."""
        mime = content_type_of(scope)[0]
        schema = self.body_schemas.get(mime) or next(iter(self.body_schemas.values()), {})
        if mime in FORM_TYPES:
            operation = self.operation
            parser = operation.uri_parser_class(
                operation.parameters, operation.body_definition(mime)
            )
            form = await ConnexionRequest(scope, receive, uri_parser=parser).form()
            return {**deepcopy(schema.get("default", {})), **form}
        body = scope.get(PARSED_BODY)  # absent when the request had no body
        if is_nullable(schema) and is_null(body):
            return None
        if body is None:
            return deepcopy(schema.get("default", {}))
        return body
