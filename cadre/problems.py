"""The one function that turns any exception into an ``application/problem+json`` reply."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from connexion.exceptions import Forbidden as ConnexionForbidden
from connexion.exceptions import (
    OAuthScopeProblem,
    ProblemException,
    UnsupportedMediaTypeProblem,
)
from connexion.exceptions import Unauthorized as ConnexionUnauthorized
from connexion.lifecycle import ConnexionResponse
from starlette.exceptions import HTTPException

from cadre import errors
from cadre.context import request_id

log = logging.getLogger("cadre.errors")

PROBLEM_TYPE_BASE = "https://cadre.dev/problems/"
_BY_STATUS: dict[int, type[errors.CadreError]] = {
    cls.status: cls
    for cls in (
        errors.BadRequest,
        errors.Unauthorized,
        errors.Forbidden,
        errors.NotFound,
        errors.MethodNotAllowed,
        errors.Conflict,
        errors.PayloadTooLarge,
        errors.UnsupportedMediaType,
        errors.ValidationFailed,
        errors.RateLimited,
        errors.ServiceUnavailable,
    )
}


def as_cadre_error(exc: BaseException) -> errors.CadreError:
    """Translate Connexion's, Starlette's and unexpected exceptions into Cadre's tree."""
    if isinstance(exc, errors.CadreError):
        return exc
    if isinstance(exc, OAuthScopeProblem):
        return errors.InsufficientScope(
            "The access token lacks a scope this operation needs.",
            details={"required_scopes": sorted(exc.required_scopes or [])},
        )
    if isinstance(exc, ConnexionUnauthorized):
        return errors.Unauthorized(
            "Authentication required: send 'Authorization: Bearer <access token>'."
        )
    if isinstance(exc, ConnexionForbidden):
        return errors.Forbidden(exc.detail)
    if isinstance(exc, UnsupportedMediaTypeProblem):
        return errors.UnsupportedMediaType(exc.detail)
    if isinstance(exc, UnicodeDecodeError):
        return errors.BadRequest("The request is not valid UTF-8.", error="invalid_encoding")
    if isinstance(exc, ProblemException | HTTPException) and exc.status_code < 500:
        cls = _BY_STATUS.get(exc.status_code, errors.BadRequest)
        detail = exc.detail if isinstance(exc.detail, str) else None
        if exc.status_code == 404:
            detail = "No such route."
        err = cls(detail)
        err.status = exc.status_code
        return err
    log.error("unhandled error", exc_info=exc)
    return errors.CadreError("The server hit an unexpected error; it has been logged.")


def problem_body(err: errors.CadreError) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + err.error,
        "title": err.title,
        "status": err.status,
        "detail": err.message,
        "error": err.error,
        "message": err.message,
        "details": err.details,
        "request_id": request_id.get(),
    }
    body.update(err.extra)
    return body


def render(exc: BaseException) -> tuple[int, dict[str, str], bytes]:
    err = as_cadre_error(exc)
    headers = {**err.headers, "Content-Type": "application/problem+json"}
    return err.status, headers, orjson.dumps(problem_body(err))


def make_error_handler(
    allowed_methods: Callable[[str], list[str]],
) -> Callable[[Any, Exception], ConnexionResponse]:
    """The handler registered with Connexion for every exception type.

    ``allowed_methods(path)`` lists what the spec declares for a path, so a 405
    carries an ``Allow`` header naming every method, not just the first route's.
    """

    def handle(request: Any, exc: Exception) -> ConnexionResponse:
        status, headers, body = render(exc)
        if status == 405:
            headers["Allow"] = ", ".join(allowed_methods(request.url.path))
        return ConnexionResponse(
            status_code=status, body=body, headers=headers, content_type="application/problem+json"
        )

    return handle
