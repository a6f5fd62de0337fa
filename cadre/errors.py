"""Domain errors and the one place that turns any error into problem+json.

Every error the API returns is an ``application/problem+json`` body carrying the
RFC 9457 members (``type``, ``title``, ``status``, ``detail``) and Cadre's own
members (``error``, ``message``, ``details``, ``request_id``)::

    CadreError                      500 internal_error
    ├── BadRequest                  400 bad_request
    ├── Unauthorized                401 not_authenticated
    ├── Forbidden                   403 forbidden
    │   ├── InsufficientScope       403 insufficient_scope
    │   └── AccountDisabled         403 account_disabled
    ├── NotFound                    404 not_found
    ├── MethodNotAllowed            405 method_not_allowed
    ├── Conflict                    409 conflict
    ├── PayloadTooLarge             413 payload_too_large
    ├── UnsupportedMediaType        415 unsupported_media_type
    ├── ValidationFailed            422 validation_error
    ├── RateLimited                 429 rate_limit_exceeded
    └── ServiceUnavailable          503 service_unavailable

Storage and engine code raise these; handlers never build error bodies.
"""

from __future__ import annotations

from typing import Any


class CadreError(Exception):
    """Base of every error Cadre reports to a client."""

    status: int = 500
    error: str = "internal_error"
    title: str = "Internal Server Error"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        error: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.message = message or self.title
        self.details = details or {}
        self.headers = headers or {}
        self.extra = extra or {}
        if error:
            self.error = error
        super().__init__(self.message)


MAX_DETAIL_CHARS = 200


def excerpt(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """``text`` cut to ``limit`` characters, keeping its start and end.

    Validation messages quote the value they refuse (``'xxx…' is too long``): an error
    reply must not echo a megabyte of the caller's input back to it.
    """
    if len(text) <= limit:
        return text
    tail = limit // 4
    return f"{text[: limit - tail - 1]}…{text[-tail:]}"


class BadRequest(CadreError):
    status, error, title = 400, "bad_request", "Bad Request"


class Unauthorized(CadreError):
    status, error, title = 401, "not_authenticated", "Unauthorized"

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("WWW-Authenticate", 'Bearer realm="cadre"')


class Forbidden(CadreError):
    status, error, title = 403, "forbidden", "Forbidden"


class InsufficientScope(Forbidden):
    error, title = "insufficient_scope", "Insufficient Scope"


class AccountDisabled(Forbidden):
    error, title = "account_disabled", "Account Disabled"


class NotFound(CadreError):
    status, error, title = 404, "not_found", "Not Found"


class MethodNotAllowed(CadreError):
    status, error, title = 405, "method_not_allowed", "Method Not Allowed"


class Conflict(CadreError):
    status, error, title = 409, "conflict", "Conflict"


class PayloadTooLarge(CadreError):
    status, error, title = 413, "payload_too_large", "Payload Too Large"


class UnsupportedMediaType(CadreError):
    status, error, title = 415, "unsupported_media_type", "Unsupported Media Type"


class ValidationFailed(CadreError):
    status, error, title = 422, "validation_error", "Unprocessable Entity"


class RateLimited(CadreError):
    status, error, title = 429, "rate_limit_exceeded", "Too Many Requests"


class ServiceUnavailable(CadreError):
    status, error, title = 503, "service_unavailable", "Service Unavailable"
