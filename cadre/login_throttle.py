"""Failed logins counted per account, so that guessing a password does not scale with addresses.

After ``max_failures`` failed logins within ``window`` seconds (counted from the first
attempt) an account refuses every login, the right password included, with 429
``too_many_login_attempts`` until the window passes. An unknown name is counted and
refused the same way, so the throttle tells nothing about which accounts exist. The
counters live in the ``limits`` storage the rate limits use: memory (per worker), or
Redis when ``CADRE_REDIS_URL`` is set (shared by every worker and machine).
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

from limits.aio.storage import Storage

from cadre.errors import RateLimited
from cadre.middleware.rate_limit import open_storage


class LoginThrottle:
    def __init__(self, redis_url: str | None, *, max_failures: int, window: int) -> None:
        self.max_failures = max_failures
        self.window = window
        self._redis_url = redis_url
        self._storage: Storage | None = None
        self._pool: Any = None

    @property
    def storage(self) -> Storage:
        if self._storage is None:  # made on first use, inside the server's event loop
            self._storage, self._pool = open_storage(self._redis_url)
        return self._storage

    @staticmethod
    def key(account: str) -> str:
        """The counter of ``account`` (a user id, or an unknown name as typed, lower-cased)."""
        return "cadre-login-failures/" + hashlib.sha256(account.encode()).hexdigest()

    async def attempt(self, account: str) -> None:
        """Count one login attempt at ``account``; 429 ``too_many_login_attempts`` past the limit.

        The attempt is counted before the password is checked, so that concurrent guesses
        cannot all slip in under the limit; a successful login clears the count.
        """
        if self.max_failures <= 0:
            return
        key = self.key(account)
        if await self.storage.incr(key, self.window) <= self.max_failures:
            return
        retry_after = max(1, math.ceil(await self.storage.get_expiry(key) - time.time()))
        raise RateLimited(
            f"Too many failed logins for this account. Try again in {retry_after} seconds.",
            error="too_many_login_attempts",
            headers={"Retry-After": str(retry_after)},
            extra={"retry_after": retry_after},
        )

    async def succeeded(self, account: str) -> None:
        if self.max_failures > 0:
            await self.storage.clear(self.key(account))

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
