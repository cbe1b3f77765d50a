"""The emulator's rate limiters: Whop's documented one (fixed or sliding window), and a bucket.

Whop allows ``RateLimit.requests`` per ``RateLimit.per`` seconds per API operation and credential,
and says how long to wait only in the 429's message. Whop does not document whether its window is
fixed or sliding, so both are here. A request refused with 429 does not count against the window.
``TokenBucket`` is the emulator's older model (a one-second bucket answering ``Retry-After``),
kept for tests of clients that read that header.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Literal, Protocol, TypeAlias

from .._ratelimit import RateLimit

__all__ = [
    "FixedWindow",
    "Limiter",
    "SlidingWindow",
    "TokenBucket",
    "Window",
    "make_limiter",
    "make_window",
    "most_in_any_window",
]

Window: TypeAlias = Literal["fixed", "sliding"]


class Limiter(Protocol):
    def take(self, key: str, now: float) -> float | None:
        """Count a request of ``key`` at ``now``; ``None`` if allowed, else seconds to wait."""


class FixedWindow:
    """``requests`` per window of ``per`` seconds, windows aligned on the clock's multiples."""

    def __init__(self, limit: RateLimit) -> None:
        self._limit = limit
        self._counts: dict[str, tuple[int, int]] = {}

    def take(self, key: str, now: float) -> float | None:
        window = math.floor(now / self._limit.per)
        start, count = self._counts.get(key, (window, 0))
        if start != window:
            count = 0
        if count >= self._limit.requests:
            return (window + 1) * self._limit.per - now
        self._counts[key] = (window, count + 1)
        return None


class SlidingWindow:
    """At most ``requests`` accepted in any ``per`` seconds: a log of accepted times per key."""

    def __init__(self, limit: RateLimit) -> None:
        self._limit = limit
        self._accepted: dict[str, deque[float]] = {}

    def take(self, key: str, now: float) -> float | None:
        accepted = self._accepted.setdefault(key, deque())
        while accepted and accepted[0] <= now - self._limit.per:
            accepted.popleft()
        if len(accepted) >= self._limit.requests:
            return accepted[0] + self._limit.per - now
        accepted.append(now)
        return None


class TokenBucket:
    """``rate`` requests a second, bursts of up to one second's worth, shared by every key."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._tokens = rate
        self._at: float | None = None

    def take(self, key: str, now: float) -> float | None:
        if self._at is not None:
            self._tokens = min(self._rate, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return None
        return (1 - self._tokens) / self._rate


def most_in_any_window(times: Iterable[float], per: float) -> int:
    """The most of ``times`` that fall in any interval of ``per`` seconds.

    What a client's pacing looks like from the server: ``most_in_any_window(arrivals, 60.0)``
    must not exceed the requests Whop allows per minute.
    """
    ordered = sorted(times)
    most, first = 0, 0
    for last, moment in enumerate(ordered):
        while ordered[first] <= moment - per:
            first += 1
        most = max(most, last - first + 1)
    return most


def make_window(limit: RateLimit, window: Window) -> Limiter:
    """Whop's limiter with the given kind of window."""
    if window == "fixed":
        return FixedWindow(limit)
    if window == "sliding":
        return SlidingWindow(limit)
    raise ValueError(f"rate_limit_window must be 'fixed' or 'sliding', got {window!r}")


def make_limiter(
    rate_limit: RateLimit | None, window: Window, token_bucket: float | None
) -> Limiter | None:
    """The emulator's limiter: a ``TokenBucket`` if asked for, else Whop's window, else none."""
    if token_bucket is not None:
        return TokenBucket(token_bucket)
    if rate_limit is None:
        return None
    if not isinstance(rate_limit, RateLimit):
        raise TypeError(
            f"rate_limit must be a RateLimit or None, got {type(rate_limit).__name__} "
            "(token_bucket=N is the older per-second model)"
        )
    return make_window(rate_limit, window)
