"""Per-user (or per-IP) rate limits on the ``limits`` library, inside Connexion's stack.

It runs after Connexion's security check, so the bucket is the token's user and
the limit follows its role: anonymous, authenticated or premium. Storage is in
memory, or Redis when ``CADRE_REDIS_URL`` is set (shared by every worker).
"""

from __future__ import annotations

import math
import time
from typing import Any

from limits import RateLimitItem, parse
from limits import storage as limits_storage
from limits.aio.storage import MemoryStorage, Storage
from starlette.types import ASGIApp, Receive, Scope, Send

from cadre.context import response_headers
from cadre.errors import RateLimited

EXEMPT_OPERATIONS = frozenset(
    {
        "getHealth",
        "getApiHealth",
        "getMetrics",
        "getRedoc",
        "getRedocScript",
        "getOpenapi",
        "getApiOpenapi",
    }
)


def open_storage(redis_url: str | None) -> tuple[Storage, Any]:
    """Memory, or Redis with a pool of our own (returned, so that shutdown can close it)."""
    if not redis_url:
        return MemoryStorage(), None
    import redis.asyncio

    pool = redis.asyncio.ConnectionPool.from_url(redis_url.removeprefix("async+"))
    uri = redis_url if redis_url.startswith("async+") else f"async+{redis_url}"
    storage = limits_storage.storage_from_string(
        uri, implementation="redispy", connection_pool=pool
    )
    return storage, pool


class RateLimiter:
    """Which limit applies to whom, and the window arithmetic."""

    def __init__(
        self, redis_url: str | None, *, anonymous: str, authenticated: str, premium: str
    ) -> None:
        self.storage, self._pool = open_storage(redis_url)
        self.limits: dict[str, RateLimitItem] = {
            "anonymous": parse(anonymous),
            "user": parse(authenticated),
            "admin": parse(authenticated),
            "premium": parse(premium),
        }

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()

    async def check(self, tier: str, key: str) -> tuple[RateLimitItem, bool, int, float]:
        """Count one request; returns (limit, allowed, remaining, reset epoch seconds).

        A fixed window, as ``limits``' FixedWindowRateLimiter keeps it, in two storage
        calls instead of its three (``hit`` and ``get_window_stats``): the count the
        increment returns is the one the remaining figure needs.
        """
        item = self.limits.get(tier, self.limits["user"])
        storage_key = item.key_for(tier, key)
        count = await self.storage.incr(storage_key, item.get_expiry())
        reset = await self.storage.get_expiry(storage_key)
        return item, count <= item.amount, max(0, item.amount - count), reset

    async def retry_after(self, tier: str, key: str) -> int | None:
        """Count one request; None if it is allowed, else the seconds until it would be.

        The WebSocket channels count their connections and executions with it, in the
        same buckets (and storage) as the HTTP requests of the same user.
        """
        _item, allowed, _remaining, reset = await self.check(tier, key)
        return None if allowed else max(1, math.ceil(reset - time.time()))


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        extensions = scope.get("extensions", {})
        operation = extensions.get("connexion_routing", {}).get("operation_id")
        if scope["type"] != "http" or operation in EXEMPT_OPERATIONS:
            await self.app(scope, receive, send)
            return
        token = extensions.get("connexion_context", {}).get("token_info")
        if token:
            tier, key = token["role"], token["sub"]
        else:
            client = scope.get("client")
            tier, key = "anonymous", client[0] if client else "unknown"
        item, allowed, remaining, reset = await self.limiter.check(tier, key)
        headers = [
            (b"x-ratelimit-limit", str(item.amount).encode()),
            (b"x-ratelimit-remaining", str(remaining).encode()),
            (b"x-ratelimit-reset", str(math.ceil(reset)).encode()),
        ]
        response_headers.get().extend(headers)
        if not allowed:
            retry_after = max(1, math.ceil(reset - time.time()))
            raise RateLimited(
                f"Rate limit exceeded. Try again in {retry_after} seconds.",
                headers={"Retry-After": str(retry_after)},
                extra={"retry_after": retry_after},
            )
        await self.app(scope, receive, send)
