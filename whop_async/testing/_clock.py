"""``FakeClock``: time that moves only when a test says so, for pacing and backoff tests.

Pass it as ``AsyncWhop(clock=...)`` or ``LocalRateLimiter(limit, clock=...)``. In the default
mode time stands still: every ``sleep`` waits until the test calls ``advance``, which wakes the
sleepers due in deadline order. With ``auto_advance=True`` a sleep moves time forward by
itself and returns at once: right for one call in sequence (its backoff adds up exactly), and
it lets a test over real sockets count what happened in a minute without waiting a minute.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

__all__ = ["FakeClock"]

#: Event-loop turns ``advance`` gives woken tasks to run until they wait again.
_SETTLE_TURNS = 20


class FakeClock:
    """A ``whop_async.Clock`` under the test's control.

    Args:
        start: The reading before any time has passed.
        auto_advance: Let each ``sleep`` move time forward itself instead of waiting.
    """

    def __init__(self, start: float = 0.0, *, auto_advance: bool = False) -> None:
        self._now = start
        self._auto_advance = auto_advance
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self.slept: list[float] = []
        """Every wait asked of the clock, in order: what the code under test wanted to sleep."""

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        deadline = self._now + seconds
        if self._auto_advance:
            self._now = max(self._now, deadline)
            await asyncio.sleep(0)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._order), waiter))
        await waiter

    @property
    def sleepers(self) -> list[float]:
        """How long until each pending sleep is due, soonest first."""
        pending = sorted(deadline for deadline, _, waiter in self._sleepers if not waiter.done())
        return [deadline - self._now for deadline in pending]

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking each sleep as its deadline passes."""
        target = self._now + seconds
        await _settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, waiter = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not waiter.done():
                waiter.set_result(None)
                await _settle()
        self._now = max(self._now, target)
        await _settle()

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r}, sleepers={len(self.sleepers)})"


async def _settle() -> None:
    """Let every task that can run do so until it waits again (on the clock or anything else)."""
    for _ in range(_SETTLE_TURNS):
        await asyncio.sleep(0)
