"""Request ids and security headers on every HTTP response."""

from __future__ import annotations

import random
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cadre.context import request_id, response_headers

_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_FIXED_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class RequestContextMiddleware:
    """Echo a sane ``X-Request-ID`` (or make one) and add the fixed security headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                rid = candidate if _SANE_ID.match(candidate) else ""
                break
        # 96 random bits name a request uniquely; they need not be unguessable, so the
        # cheap generator will do (no system call per request, unlike secrets).
        rid = rid or f"req_{random.getrandbits(96):024x}"
        request_id.set(rid)
        extra = [(b"x-request-id", rid.encode()), *_FIXED_HEADERS]
        response_headers.set(extra)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
