"""A Content-Security-Policy for the documentation pages (``/docs``, Swagger UI; ``/redoc``).

Both pages load only what Cadre serves itself: scripts from the same origin
(Swagger UI's one inline script is allowed by its hash, computed from the page
as served), the spec from ``/openapi.json``, images from the same origin or
``data:`` URIs. ReDoc fetches a logo from its CDN (now refused: its footer simply
shows no logo), runs its search in a ``blob:`` worker, and like Swagger UI
writes ``<style>`` elements, so inline styles are allowed.
"""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BASE_POLICY = (
    "default-src 'none'; script-src 'self'{hashes}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src blob:; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def policy_for(html: bytes) -> str:
    """The policy for one page: the base policy, with the hash of each inline script."""
    hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return BASE_POLICY.format(hashes=hashes)


class DocsPolicyMiddleware:
    """Adds the policy to HTML replies under ``prefixes``; everything else passes untouched."""

    def __init__(self, app: ASGIApp, prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def hold_html(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                if not headers.get(b"content-type", b"").startswith(b"text/html"):
                    await send(message)
                    return
                start = message  # a small page: held until its body is complete
                return
            if start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            policy = policy_for(body).encode()
            start["headers"] = [*start.get("headers", []), (b"content-security-policy", policy)]
            await send(start)
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, hold_html)
