"""Client-side rate limiting: the one thing every attempt of a client passes through.

Whop allows 600 requests per minute per API operation and credential, and answers a 429 whose
wait is only in its message. A client that learns its limit from 429s loses calls and spends half
of a bulk send on them, so the limit is kept on this side, per operation, by a *limiter*::

    async with limiter.attempt("POST /notifications") as permit:
        response = ...                     # the attempt; waiting above is not part of its time
        permit.record(response.status)     # or record(429, retry_after=wait)

``LocalRateLimiter`` enforces a ``RateLimit`` in one process (``whop_async.redis`` shares one
between processes); ``Unlimited`` is the limiter of ``rate_limit=None`` and does nothing. A bulk
send wraps the client's limiter to add its own pacing and counters (``_gate.py``).
"""

from __future__ import annotations

import abc
import asyncio
import math
import re
from collections import deque
from types import TracebackType
from typing import Any, Final

import attrs

from ._config import check_int, is_real
from ._exceptions import InvalidParamsError

__all__ = [
    "DEFAULT_RATE_LIMIT",
    "LocalRateLimiter",
    "Permit",
    "RateLimit",
    "RateLimiter",
    "Unlimited",
    "make_limiter",
    "safe_window",
]

#: A 429 pauses the operation at least this long, so that even an instant backoff advances the
#: clock that ``max_rate_limit_wait`` bounds.
MIN_RATE_LIMIT_PAUSE: Final = 0.05
#: After a 429 the pacing rate never drops below this share of the configured rate.
MIN_RATE_SHARE: Final = 0.05
#: A 429 lowers the pace only when at least this many successes since the last pause say what
#: the server allows; fewer say nothing (a stray 429), and the pause alone answers it.
MIN_SUCCESSES_TO_LEARN: Final = 5
#: A lowered rate grows back by this share of the configured rate per ``per`` seconds.
RECOVERY_PER_WINDOW: Final = 0.05


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


def safe_window(limit: RateLimit) -> float:
    """The window a client keeps: ``per`` plus a margin for the trip to the server.

    Requests reach Whop a little later than they start, by varying amounts; a client that
    spaced them exactly ``per`` apart would now and then be seen over the limit. The margin is
    0.5 % of ``per``, at least 50 ms and at most 1 s (0.3 s for Whop's minute).
    """
    return limit.per + min(max(0.05, limit.per * 0.005), 1.0)


DEFAULT_RATE_LIMIT: Final = RateLimit(600, per=60.0)


class Permit:
    """One attempt's pass through a limiter; the attempt records how it ended.

    ``status`` is the HTTP status, or ``None`` when no response arrived; ``retry_after`` is the
    wait a 429 asked for (already capped), so the limiter can pause everyone for it.
    """

    __slots__ = ("retry_after", "started_at", "status")

    def __init__(self, started_at: float = 0.0) -> None:
        self.started_at = started_at
        """When the limiter let the attempt go (the event loop's clock)."""
        self.status: int | None = None
        self.retry_after: float | None = None

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
        """The rate (requests per second) the limiter has slowed ``operation`` to, if any."""
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


class _Bucket:
    """The state of one operation: recent starts, the pause in force, the learned pace."""

    __slots__ = (
        "epoch",
        "learned_at",
        "learned_rate",
        "lock",
        "next_at",
        "pause_until",
        "starts",
        "successes",
    )

    def __init__(self, requests: int) -> None:
        self.starts: deque[float] = deque(maxlen=requests)
        self.pause_until = 0.0
        self.learned_rate: float | None = None
        self.learned_at = 0.0
        self.next_at = 0.0
        self.epoch = 0.0
        self.successes: deque[float] = deque(maxlen=requests)
        """When each recent success started, counting only those sent since the last pause."""
        self.lock = asyncio.Lock()


class LocalRateLimiter(RateLimiter):
    """A ``RateLimit`` kept in this process, per operation, and tightened by the 429s it sees.

    * **The limit.** A sliding log of start times: an attempt starts only if fewer than
      ``requests`` started in the last ``per`` seconds (plus a small margin for the time a
      request takes to reach the server). Bursts up to the limit go at once.
    * **A 429 pauses everyone** for the wait Whop asked for, not only the call that met it.
    * **Learning.** A 429 means the real budget is smaller than configured (another process on
      the same key, another plan, another window). Given ``MIN_SUCCESSES_TO_LEARN`` successes
      to go by (fewer make a stray 429, which the pause answers), the limiter paces the
      operation at the
      rate that got through in the last ``per`` seconds since the last pause (successes / (time
      they took + the wait asked)), which is what the server allows, at least
      ``MIN_RATE_SHARE`` of the configured rate. The
      pace grows back by ``RECOVERY_PER_WINDOW`` of the configured rate per ``per`` seconds and
      is dropped once it reaches it, and at least ``per`` seconds have passed.

    Waiters are served first come, first served: one at a time computes its start, so a crowd
    of waiting calls is not woken for every slot.
    """

    def __init__(self, limit: RateLimit) -> None:
        if not isinstance(limit, RateLimit):
            raise InvalidParamsError(
                "rate_limit", f"must be a RateLimit, got {type(limit).__name__}"
            )
        self._limit = limit
        self._window = safe_window(limit)
        self._buckets: dict[str, _Bucket] = {}

    @property
    def limit(self) -> RateLimit:
        return self._limit

    def _bucket(self, operation: str) -> _Bucket:
        bucket = self._buckets.get(operation)
        if bucket is None:
            bucket = self._buckets[operation] = _Bucket(self._limit.requests)
        return bucket

    def _pace(self, bucket: _Bucket, now: float) -> float | None:
        """The learned rate grown back since it was set; ``None`` once fully recovered.

        The pace never exceeds the configured rate, and holds for at least one ``per`` after a
        429: a server whose window is shorter than ours asked for smooth sending, not bursts.
        """
        if bucket.learned_rate is None:
            return None
        rate = self._limit.rate
        elapsed = now - bucket.learned_at
        grown = bucket.learned_rate + rate * RECOVERY_PER_WINDOW * elapsed / self._limit.per
        if grown >= rate and elapsed >= self._limit.per:
            bucket.learned_rate = None
            return None
        return min(grown, rate)

    def _ready_at(self, bucket: _Bucket, now: float) -> float:
        ready = bucket.pause_until
        starts = bucket.starts
        if len(starts) == self._limit.requests:
            ready = max(ready, starts[0] + self._window)
        if self._pace(bucket, now) is not None:
            ready = max(ready, bucket.next_at)
        return ready

    def _start(self, bucket: _Bucket, now: float) -> Permit:
        bucket.starts.append(now)
        pace = self._pace(bucket, now)
        if pace is not None:
            bucket.next_at = max(now, bucket.next_at) + 1.0 / pace
        return Permit(now)

    async def acquire(self, operation: str) -> Permit:
        bucket = self._bucket(operation)
        loop = asyncio.get_running_loop()
        now = loop.time()
        if not bucket.lock.locked() and self._ready_at(bucket, now) <= now:
            return self._start(bucket, now)
        async with bucket.lock:  # first come, first served
            while True:
                now = loop.time()
                ready = self._ready_at(bucket, now)
                if ready <= now:
                    return self._start(bucket, now)
                await asyncio.sleep(ready - now)

    async def release(self, operation: str, permit: Permit) -> None:
        status = permit.status
        if status is None:
            return
        bucket = self._bucket(operation)
        if 200 <= status < 300:
            if permit.started_at >= bucket.epoch:
                bucket.successes.append(permit.started_at)
        elif status == 429:
            self._rate_limited(bucket, permit)

    def _rate_limited(self, bucket: _Bucket, permit: Permit) -> None:
        now = asyncio.get_running_loop().time()
        wait = max(permit.retry_after or 0.0, MIN_RATE_LIMIT_PAUSE)
        successes = bucket.successes
        while successes and successes[0] < now - self._limit.per:
            successes.popleft()
        if permit.started_at >= bucket.epoch and len(successes) >= MIN_SUCCESSES_TO_LEARN:
            # Sent since the last pause ended: what got through in the last window is what the
            # server allows in the time it took plus the wait it asked for.
            # Not "lower than before": a stray 429 after a long run of successes says the pace
            # was about right, and must not ratchet it down a step each time.
            allowed = len(successes) / (now - successes[0] + wait)
            rate = self._limit.rate
            bucket.learned_rate = min(max(allowed, rate * MIN_RATE_SHARE), rate)
            bucket.learned_at = now
        bucket.pause_until = max(bucket.pause_until, now + wait)
        bucket.next_at = max(bucket.next_at, bucket.pause_until)
        bucket.epoch = bucket.pause_until
        bucket.successes.clear()

    def pacing_rate(self, operation: str) -> float | None:
        bucket = self._buckets.get(operation)
        if bucket is None:
            return None
        return self._pace(bucket, asyncio.get_running_loop().time())

    def __repr__(self) -> str:
        return f"LocalRateLimiter({self._limit!r})"


def make_limiter(rate_limit: RateLimit | RateLimiter | None) -> RateLimiter:
    """The limiter for ``AsyncWhop(rate_limit=...)``: one of yours, a local one, or none.

    Raises:
        InvalidParamsError: ``rate_limit`` is none of those.
    """
    if rate_limit is None:
        return Unlimited()
    if isinstance(rate_limit, RateLimiter):
        return rate_limit
    if isinstance(rate_limit, RateLimit):
        return LocalRateLimiter(rate_limit)
    raise InvalidParamsError(
        "rate_limit",
        f"must be a RateLimit, a RateLimiter or None, got {type(rate_limit).__name__}",
    )
