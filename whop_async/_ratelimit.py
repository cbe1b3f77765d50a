"""Client-side rate limiting: the values and the interface every attempt of a client passes.

Whop allows 600 requests per minute per API operation and credential, and answers a 429 whose
wait is only in its message. A client that learns its limit only from 429s spends requests on
them, so the limit is kept on this side, per operation, by a *limiter*::

    async with limiter.attempt("POST /notifications") as permit:
        response = ...                     # the attempt; waiting above is not part of its time
        permit.record(response.status)     # or record(429, retry_after=wait)

This module holds the values (``RateLimit``, ``Permit``), the interface (``RateLimiter``) and
the limiter of ``rate_limit=None`` (``Unlimited``). The one policy that enforces a limit, over
a store in memory or in Redis, is ``_sliding_log.py``.
"""

from __future__ import annotations

import abc
import math
import re
from types import TracebackType
from typing import Any, Final, Literal, TypeAlias

import attrs

from ._config import check_int, is_real
from ._exceptions import InvalidParamsError

__all__ = [
    "DEFAULT_RATE_LIMIT",
    "MIN_RATE_LIMIT_PAUSE",
    "Permit",
    "RateLimit",
    "RateLimiter",
    "Unlimited",
    "WaitKind",
    "pause_after_429",
    "safe_window",
]

#: A 429 pauses the operation at least this long, so that even an instant backoff advances the
#: clock that ``max_rate_limit_wait`` bounds.
MIN_RATE_LIMIT_PAUSE: Final = 0.05

#: Why a limiter made an attempt wait: its own log ("local"), a log shared between processes
#: ("shared"), or a pause after a 429 ("pause").
WaitKind: TypeAlias = Literal["local", "shared", "pause"]


def pause_after_429(asked: float | None) -> float:
    """How long a 429 pauses: the wait asked for (already capped), at least the minimum.

    The one place the floor is applied: the limiter pauses every call of the operation for it,
    and the retry loop waits at least that long after a 429.
    """
    return max(asked or 0.0, MIN_RATE_LIMIT_PAUSE)


def _check_per(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not is_real(value) or not 0 < value < math.inf:  # type: ignore[operator]
        raise InvalidParamsError(
            f"rate_limit.{attribute.name}", f"must be a number of seconds > 0, got {value!r}"
        )


def _check_requests(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    check_int(f"rate_limit.{attribute.name}", value, minimum=1)


@attrs.frozen
class RateLimit:
    """At most ``requests`` requests started in any interval of ``per`` seconds.

    ``RateLimit(600, per=60.0)`` is Whop's documented limit (per API operation and key), and
    the default of ``AsyncWhop``.
    """

    requests: int = attrs.field(validator=_check_requests)
    """How many requests the interval allows."""

    per: float = attrs.field(default=60.0, kw_only=True, validator=_check_per)
    """The interval, in seconds."""

    @property
    def rate(self) -> float:
        """The sustained rate it allows, in requests per second."""
        return self.requests / self.per

    def duration(self, count: int) -> float:
        """Seconds that ``count`` requests take at this limit, at best (an ETA for big sends)."""
        return count / self.rate

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """Read ``"600/60"`` (requests per seconds) or ``"600"`` (per minute).

        Raises:
            InvalidParamsError: ``text`` is not of that form.
        """
        match = re.fullmatch(r"\s*(\d+)\s*(?:/\s*(\d+(?:\.\d*)?|\.\d+)\s*)?", text)
        if match is None:
            raise InvalidParamsError(
                "rate_limit", f"must look like REQUESTS/SECONDS (e.g. 600/60), got {text!r}"
            )
        return cls(int(match[1]), per=float(match[2]) if match[2] else 60.0)

    def __str__(self) -> str:
        return f"{self.requests}/{self.per:g}s"


def safe_window(per: float) -> float:
    """The window a client keeps for a server window of ``per`` seconds: ``per`` plus a margin.

    Requests reach Whop a little later than they start, by varying amounts; a client that
    spaced them exactly ``per`` apart would now and then be seen over the limit. The margin is
    0.5 % of ``per``, at least 50 ms and at most 1 s (0.3 s for Whop's minute).
    """
    return per + min(max(0.05, per * 0.005), 1.0)


DEFAULT_RATE_LIMIT: Final = RateLimit(600, per=60.0)


class Permit:
    """One attempt's pass through a limiter; the attempt records how it ended.

    ``status`` is the HTTP status, or ``None`` when no response arrived; ``retry_after`` is the
    wait a 429 asked for (already capped; ``None`` when it asked none), so the limiter can
    pause everyone for it (``pause_after_429``). ``waited``
    and ``wait_kind`` say how long the limiter held the attempt back, and why.
    """

    __slots__ = ("epoch", "retry_after", "started_at", "status", "wait_kind", "waited")

    def __init__(self, started_at: float = 0.0) -> None:
        self.started_at = started_at
        """When the limiter let the attempt go, on the limiter's clock."""
        self.status: int | None = None
        self.retry_after: float | None = None
        self.waited = 0.0
        """Seconds the limiter held the attempt back."""
        self.wait_kind: WaitKind | None = None
        """Why it held it back longest, when it did."""
        self.epoch = -math.inf
        """When the last pause after a 429 ended, as the attempt was let go (limiter's clock)."""

    def record(self, status: int | None, *, retry_after: float | None = None) -> None:
        """Say how the attempt ended: its status (``None``: no response) and a 429's wait."""
        self.status = status
        self.retry_after = retry_after


class _Attempt:
    """``limiter.attempt(operation)``: acquire on entry, release with what was recorded on exit."""

    __slots__ = ("_limiter", "_operation", "_permit")

    def __init__(self, limiter: RateLimiter, operation: str) -> None:
        self._limiter = limiter
        self._operation = operation

    async def __aenter__(self) -> Permit:
        self._permit = await self._limiter.acquire(self._operation)
        return self._permit

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._limiter.release(self._operation, self._permit)


class RateLimiter(abc.ABC):
    """What ``AsyncWhop(rate_limit=...)`` accepts besides a ``RateLimit``: a limiter of yours.

    Subclasses implement ``acquire`` (wait until an attempt of ``operation`` may start) and
    ``release`` (learn how it ended). Callers use ``async with limiter.attempt(operation)``.
    A limiter only limits: what else wants to see every attempt (a bulk send's counters,
    hooks, tracing) watches the request loop instead.
    """

    @property
    @abc.abstractmethod
    def limit(self) -> RateLimit | None:
        """The configured limit, or ``None`` when nothing is limited."""

    @abc.abstractmethod
    async def acquire(self, operation: str) -> Permit:
        """Wait until an attempt of ``operation`` may start, and return its permit."""

    @abc.abstractmethod
    async def release(self, operation: str, permit: Permit) -> None:
        """Learn how the attempt ended (``permit.status``, ``permit.retry_after``)."""

    def attempt(self, operation: str) -> _Attempt:
        """``async with limiter.attempt(op) as permit:``: one attempt through the limiter."""
        return _Attempt(self, operation)

    def pacing_rate(self, operation: str) -> float | None:
        """The rate (requests per second) that 429s have taught the limiter for ``operation``,
        while it is below the configured one; ``None`` otherwise. Reading it changes nothing."""
        return None

    async def aclose(self) -> None:  # noqa: B027 - optional for subclasses
        """Release what the limiter holds (a connection); called by nothing but its owner."""


class Unlimited(RateLimiter):
    """The limiter of ``rate_limit=None``: every attempt goes at once; nothing is learned."""

    @property
    def limit(self) -> None:
        return None

    async def acquire(self, operation: str) -> Permit:
        return Permit()

    async def release(self, operation: str, permit: Permit) -> None:
        return None

    def __repr__(self) -> str:
        return "Unlimited()"
