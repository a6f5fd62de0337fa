"""Run slots: at most ``max_running`` executions at once, at most ``per_user`` of one user.

Waiters are served in the order they asked. A waiter whose user already runs
``per_user`` executions is skipped, not blocked on: the runs of other users
behind it start, and it keeps its place for the next free slot of its own user.
Every grant happens in ``release`` (or at once in ``acquire``), so after each call
no waiter that could run is still waiting.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class _Waiter:
    owner: str
    granted: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Scheduler:
    def __init__(self, max_running: int, per_user: int) -> None:
        self.max_running = max_running
        self.per_user = per_user
        self.running: Counter[str] = Counter()
        self.waiters: list[_Waiter] = []

    @property
    def total(self) -> int:
        return sum(self.running.values())

    def _fits(self, owner: str) -> bool:
        return self.total < self.max_running and self.running[owner] < self.per_user

    def try_acquire(self, owner: str) -> bool:
        """Take a slot now if one is free for ``owner``; never jumps a waiter that could run."""
        if not self._fits(owner):
            return False
        self.running[owner] += 1
        return True

    async def acquire(self, owner: str) -> None:
        """Wait, in order, for a slot ``owner`` may use."""
        if self.try_acquire(owner):
            return
        waiter = _Waiter(owner)
        self.waiters.append(waiter)
        try:
            await waiter.granted
        except asyncio.CancelledError:
            if waiter.granted.done() and not waiter.granted.cancelled():
                self.release(owner)  # granted just as it was cancelled: pass the slot on
            else:
                self.waiters.remove(waiter)
            raise

    def release(self, owner: str) -> None:
        self.running[owner] -= 1
        if self.running[owner] <= 0:
            del self.running[owner]
        self._wake()

    def _wake(self) -> None:
        for waiter in list(self.waiters):
            if self.total >= self.max_running:
                return
            if waiter.granted.done():  # cancelled; its task removes it
                continue
            if self.running[waiter.owner] < self.per_user:
                self.running[waiter.owner] += 1
                self.waiters.remove(waiter)
                waiter.granted.set_result(None)
