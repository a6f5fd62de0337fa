"""Failed logins counted per account, so that guessing a password does not scale with addresses.

After ``max_failures`` failed logins within ``window`` seconds (counted from the first
failure) an account refuses every login, the right password included, with 429
``too_many_login_attempts`` until the window passes. An unknown name is counted and
refused the same way, so the throttle tells nothing about which accounts exist.

Two counters per account: ``failures``, and ``slots`` (failures plus the logins whose
password is being checked right now). A login takes a slot before its password is
hashed, so concurrent guesses cannot all slip in under the limit: at most
``max_failures`` passwords are checked per window. A wrong password keeps its slot
(it is a failure now); a right one gives it back and clears the failures. A login that
finds every slot held by checks still under way waits for them (polling) instead of
being refused, so the right password is never throttled by its own concurrency; only
``max_failures`` failures, or a wait longer than ``MAX_WAIT_SECONDS``, refuse it.

The counters live in the ``limits`` storage the rate limits use: memory (per worker),
or Redis when ``CADRE_REDIS_URL`` is set (shared by every worker and machine).
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

import anyio
from limits.aio.storage import Storage

from cadre.errors import RateLimited
from cadre.middleware.rate_limit import open_storage

MAX_WAIT_SECONDS = 15.0  # for slots held by checks under way (argon2 takes tens of ms each)
POLL_SECONDS = 0.05


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
    def key(account: str, counter: str = "failures") -> str:
        """A counter of ``account`` (a user id, or an unknown name as typed, lower-cased)."""
        return f"cadre-login-{counter}/" + hashlib.sha256(account.encode()).hexdigest()

    async def reserve(self, account: str) -> None:
        """Take a slot to check one password at ``account``; 429 once failures fill the window.

        Waits while the slots are held by checks under way, which either fail (then this
        is refused) or succeed and give their slot back.
        """
        if self.max_failures <= 0:
            return
        failures, slots = self.key(account), self.key(account, "slots")
        deadline = time.monotonic() + MAX_WAIT_SECONDS
        while True:
            # Failures are read first: the slots may have been counted from a later start.
            if await self.storage.get(failures) >= self.max_failures:
                await self._refuse(failures)
            if await self.storage.incr(slots, self.window) <= self.max_failures:
                return
            await self._give_back(slots, 1)  # not ours to take: checks are under way
            if time.monotonic() >= deadline:
                await self._refuse(failures)
            await anyio.sleep(POLL_SECONDS)

    async def failed(self, account: str) -> None:
        """The password was wrong: its slot stays taken, and it counts as a failure."""
        if self.max_failures > 0:
            await self.storage.incr(self.key(account), self.window)

    async def succeeded(self, account: str) -> None:
        """The password was right: give its slot back and forget the account's failures."""
        if self.max_failures <= 0:
            return
        failures = self.key(account)
        count = await self.storage.get(failures)
        await self.storage.clear(failures)
        await self._give_back(self.key(account, "slots"), 1 + count)

    async def _give_back(self, slots: str, amount: int) -> None:
        left = await self.storage.incr(slots, self.window, -amount)
        if left < 0:  # the window ended while the check ran: start the next one at zero
            await self.storage.incr(slots, self.window, -left)

    async def _refuse(self, failures: str) -> None:
        expiry = await self.storage.get_expiry(failures)
        retry_after = max(1, math.ceil(expiry - time.time()))
        raise RateLimited(
            f"Too many failed logins for this account. Try again in {retry_after} seconds.",
            error="too_many_login_attempts",
            headers={"Retry-After": str(retry_after)},
            extra={"retry_after": retry_after},
        )

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
