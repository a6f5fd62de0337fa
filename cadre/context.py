"""Per-request values shared across middleware layers that do not share a call stack.

Connexion's exception middleware sits outside the rate limiter, so headers the
limiter computes would be lost on error replies; it appends them here instead,
and the outermost middleware adds them to whatever reply goes out.
"""

from __future__ import annotations

import contextvars

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
response_headers: contextvars.ContextVar[list[tuple[bytes, bytes]]] = contextvars.ContextVar(
    "response_headers"
)
