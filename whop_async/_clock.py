"""The one clock that pacing and backoff read, so that tests can drive time instead of waiting.

The rate limiter's log, its pauses and the retry loop's backoff sleeps all go through a
``Clock``. By default that is the running event loop's own monotonic clock; tests pass a fake
(``whop_async.testing.FakeClock``) and move time forward themselves. Socket timeouts are not
part of it: they belong to aiohttp and the real network.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "LoopClock"]


@runtime_checkable
class Clock(Protocol):
    """What pacing and backoff need of time: a monotonic reading and a way to wait."""

    def now(self) -> float:
        """Seconds on a monotonic clock (only differences mean anything)."""

    async def sleep(self, seconds: float) -> None:
        """Return after ``seconds`` of this clock have passed."""


class LoopClock:
    """The running event loop's clock: ``loop.time()`` and ``asyncio.sleep``."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "LoopClock()"
