"""One rate limit shared by every process that sends with the same key: ``RedisRateLimiter``.

Whop counts its 600 requests per minute per API operation and *key*, however many processes
send with it. Four web workers that each pace themselves to 600 a minute send 2,400 together.
``RedisRateLimiter`` keeps the budget in Redis instead, so that every process (and machine)
using the same Redis and the same ``name`` draws from one budget::

    limiter = RedisRateLimiter.for_api_key("redis://localhost:6379/0", api_key)
    async with AsyncWhop(api_key, rate_limit=limiter) as client:
        ...
    await limiter.aclose()

How it works, per API operation:

* **One atomic Lua script per attempt** keeps a sliding log of start times in a sorted set. An
  attempt starts only if fewer than ``requests`` started in the last ``per`` seconds (plus a
  small margin for the time a request takes to reach Whop); otherwise the script answers how
  long to wait, and this process sleeps that long before asking again. Times are Redis's own
  (``TIME``), so hosts whose clocks disagree still share one budget.
* **A 429 seen by any process pauses all of them**: the wait Whop asked for is written to Redis
  as a pause-until time, on Redis's clock, which every acquire respects.
* In one process, one waiter per operation asks Redis at a time (first come, first served), so
  a crowd of waiting calls costs one round trip per freed slot, not one each.

It does not lower its rate after 429s as ``LocalRateLimiter`` does: give it the limit Whop
allows (the default is Whop's documented one), and make sure every sender of the key uses it.

Needs the ``redis`` extra, ``pip install 'whop-async[redis]'`` (redis-py 5 or later), and a
Redis server 5 or later.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import re
from types import TracebackType
from typing import Final, Literal

try:
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - the extra is not installed
    raise ImportError(
        "whop_async.redis needs the redis package: pip install 'whop-async[redis]'"
    ) from exc

from ._config import API_KEY_ENV
from ._exceptions import InvalidParamsError, WhopError, shorten
from ._keys import new_idempotency_key
from ._ratelimit import (
    DEFAULT_RATE_LIMIT,
    MIN_RATE_LIMIT_PAUSE,
    LocalRateLimiter,
    Permit,
    RateLimit,
    RateLimiter,
    safe_window,
)

__all__ = ["KEY_PREFIX", "RateLimiterUnavailableError", "RedisRateLimiter"]

logger = logging.getLogger("whop_async")

#: Every key the limiter writes starts with this.
KEY_PREFIX: Final = "whop_async:ratelimit"
#: With ``on_unavailable="local"``, Redis is asked again this many seconds after it failed.
RETRY_REDIS_AFTER: Final = 5.0
#: Connect and read timeout of a connection made from a URL: a dead Redis is told in seconds.
REDIS_TIMEOUT: Final = 2.0
#: The shortest sleep between two asks, so a wait rounded down to nothing is not a busy loop.
MIN_SLEEP: Final = 0.001

_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")

# KEYS[1]: the log (a sorted set of start times); KEYS[2]: the pause (pause-until). Times in
# microseconds of Redis's clock. ARGV: requests, window, a member unique to this attempt.
# Returns 0 when the attempt may start (and logs it), else the microseconds to wait.
_ACQUIRE: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then
  return paused - now
end
local requests = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count >= requests then
  local oldest = redis.call('ZRANGE', KEYS[1], count - requests, count - requests, 'WITHSCORES')
  return math.max(tonumber(oldest[2]) + window - now, 1)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
return 0
"""

# KEYS[1]: the pause; ARGV[1]: the wait in microseconds. Pushes pause-until out, never back.
_PAUSE: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local wait = tonumber(ARGV[1])
local paused = tonumber(redis.call('GET', KEYS[1]) or '0')
if now + wait > paused then
  redis.call('SET', KEYS[1], string.format('%.0f', now + wait), 'PX', math.ceil(wait / 1000) + 1000)
end
return 0
"""


class RateLimiterUnavailableError(WhopError):
    """The shared rate limit could not be checked because Redis did not answer.

    Raised by a call of a client whose ``RedisRateLimiter`` has ``on_unavailable="fail"``,
    before anything was sent to Whop: the request never left, so sending it again later (with
    the same idempotency key or not) cannot notify twice. ``__cause__`` is redis-py's error.
    """


def _name_for_api_key(api_key: str) -> str:
    digest = hashlib.sha256(f"whop_async rate limit\0{api_key}".encode()).hexdigest()
    return f"key-{digest[:16]}"


def _address(client: Redis) -> str:
    """Where ``client`` connects, without its credentials."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
    return f"redis://{host}:{port}/{kwargs.get('db', 0)}"


class _Operation:
    """One operation's keys in Redis, and the lock that lets one waiter of this process ask."""

    __slots__ = ("lock", "log_key", "pause_key")

    def __init__(self, prefix: str) -> None:
        self.log_key = f"{prefix}:log"
        self.pause_key = f"{prefix}:pause"
        self.lock = asyncio.Lock()


class _SharedPermit(Permit):
    """A permit from the shared budget (not from the local fallback)."""

    __slots__ = ()


class RedisRateLimiter(RateLimiter):
    """A ``RateLimit`` shared through Redis by every process that uses the same ``name``.

    Pass it as ``AsyncWhop(rate_limit=...)``. The client never closes it: call ``aclose()`` (or
    use ``async with``) when done. Use it from one event loop.

    Args:
        redis: A Redis URL (``"redis://host:6379/0"``, ``"rediss://..."``, ``"unix://..."``), or a
            ``redis.asyncio.Redis`` of yours. A connection made from a URL gives up after
            ``REDIS_TIMEOUT`` seconds and is closed by ``aclose()``; a client of yours is left
            open.
        limit: The budget every process of this ``name`` shares, per API operation: Whop's
            documented ``RateLimit(600, per=60.0)`` by default.
        name: Which budget to draw from: one per API key. Defaults to a digest of the
            ``WHOP_API_KEY`` environment variable (what ``AsyncWhop()`` sends with by default);
            ``for_api_key`` derives it from a key you hold. Letters, digits and ``_.:-``.
        on_unavailable: What an attempt does when Redis does not answer: ``"fail"`` (the
            default) raises ``RateLimiterUnavailableError`` and sends nothing; ``"local"`` logs
            a warning and keeps ``limit`` in this process alone (a ``LocalRateLimiter``) until
            Redis answers again, asked every ``RETRY_REDIS_AFTER`` seconds. Meanwhile the
            processes together may exceed the limit, and Whop's 429s slow them down.

    Raises:
        InvalidParamsError: an argument is invalid, or ``name`` is not given and
            ``WHOP_API_KEY`` is not set.
    """

    def __init__(
        self,
        redis: str | Redis,
        *,
        limit: RateLimit = DEFAULT_RATE_LIMIT,
        name: str | None = None,
        on_unavailable: Literal["fail", "local"] = "fail",
    ) -> None:
        if not isinstance(limit, RateLimit):
            raise InvalidParamsError("limit", f"must be a RateLimit, got {type(limit).__name__}")
        if on_unavailable not in ("fail", "local"):
            raise InvalidParamsError(
                "on_unavailable", f"must be 'fail' or 'local', got {on_unavailable!r}"
            )
        if name is None:
            api_key = os.environ.get(API_KEY_ENV)
            if not api_key:
                raise InvalidParamsError(
                    "name",
                    f"is required when {API_KEY_ENV} is not set: pass name=..., or use "
                    "RedisRateLimiter.for_api_key(redis, api_key)",
                )
            name = _name_for_api_key(api_key)
        elif not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidParamsError(
                "name", f"must be 1 to 100 letters, digits or '_.:-', got {name!r}"
            )
        if isinstance(redis, str):
            try:
                self._redis: Redis = Redis.from_url(
                    redis,
                    socket_connect_timeout=REDIS_TIMEOUT,
                    socket_timeout=REDIS_TIMEOUT,
                    retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=2),
                )
            except ValueError as exc:
                raise InvalidParamsError("redis", f"is not a Redis URL: {exc}") from None
            self._owns_redis = True
        elif isinstance(redis, Redis):
            self._redis = redis
            self._owns_redis = False
        else:
            raise InvalidParamsError(
                "redis", f"must be a Redis URL or a redis.asyncio.Redis, got {type(redis).__name__}"
            )
        self._limit = limit
        self._name = name
        self._on_unavailable = on_unavailable
        self._address = _address(self._redis)
        self._window_us = round(safe_window(limit) * 1_000_000)
        self._acquire_script = self._redis.register_script(_ACQUIRE)
        self._pause_script = self._redis.register_script(_PAUSE)
        self._operations: dict[str, _Operation] = {}
        self._fallback = LocalRateLimiter(limit) if on_unavailable == "local" else None
        self._fallback_until = -math.inf
        self._degraded = False

    @classmethod
    def for_api_key(
        cls,
        redis: str | Redis,
        api_key: str,
        *,
        limit: RateLimit = DEFAULT_RATE_LIMIT,
        on_unavailable: Literal["fail", "local"] = "fail",
    ) -> RedisRateLimiter:
        """The limiter of ``api_key``'s budget, named by a digest that does not reveal the key.

        The name is ``"key-"`` and 16 hex digits of a SHA-256 of the key: the same key always
        gives the same name, so every process sending with it shares one budget, and neither
        Redis nor a log line holds anything from which the key can be recovered.

        Raises:
            InvalidParamsError: ``api_key`` is empty, or another argument is invalid.
        """
        if not isinstance(api_key, str) or not api_key:
            raise InvalidParamsError("api_key", "must be a non-empty string")
        return cls(
            redis, limit=limit, name=_name_for_api_key(api_key), on_unavailable=on_unavailable
        )

    @property
    def limit(self) -> RateLimit:
        return self._limit

    @property
    def name(self) -> str:
        """The budget this limiter draws from (safe to log: never the API key itself)."""
        return self._name

    def _operation(self, operation: str) -> _Operation:
        state = self._operations.get(operation)
        if state is None:
            prefix = f"{KEY_PREFIX}:{{{self._name}}}:{operation}"
            state = self._operations[operation] = _Operation(prefix)
        return state

    async def acquire(self, operation: str) -> Permit:
        """Wait until the shared budget lets an attempt of ``operation`` start.

        Raises:
            RateLimiterUnavailableError: Redis did not answer and ``on_unavailable="fail"``.
        """
        loop = asyncio.get_running_loop()
        if self._fallback is not None and loop.time() < self._fallback_until:
            return await self._fallback.acquire(operation)
        state = self._operation(operation)
        requests = self._limit.requests
        error: Exception | None = None
        async with state.lock:  # one asker per operation in this process; the rest queue here
            while True:
                if self._fallback is not None and loop.time() < self._fallback_until:
                    break  # Redis failed while this call queued: do not ask it again yet
                try:
                    wait_us = int(
                        await self._acquire_script(
                            keys=[state.log_key, state.pause_key],
                            args=[requests, self._window_us, new_idempotency_key()],
                        )
                    )
                except (RedisError, OSError) as exc:
                    error = exc
                    break
                if wait_us <= 0:
                    if self._degraded:
                        self._degraded = False
                        logger.info(
                            "Redis at %s answers again: the rate limit %r is shared again",
                            self._address,
                            self._name,
                        )
                    return _SharedPermit(loop.time())
                wait = max(wait_us / 1_000_000, MIN_SLEEP)
                logger.debug("Shared rate limit %r: %s waits %.3f s", self._name, operation, wait)
                await asyncio.sleep(wait)
        return await self._unavailable(operation, error)

    async def _unavailable(self, operation: str, error: Exception | None) -> Permit:
        """The permit of an attempt Redis could not give one to: an error, or a local one."""
        if error is None:  # another call of this process found Redis away a moment ago
            assert self._fallback is not None
            return await self._fallback.acquire(operation)
        reason = f"{type(error).__name__}: {shorten(str(error), 200)}"
        if self._fallback is None:
            raise RateLimiterUnavailableError(
                f"The shared rate limit {self._name!r} could not be checked: Redis at "
                f"{self._address} did not answer ({reason}). Nothing was sent. Start Redis or "
                "fix its address, or pass on_unavailable='local' to RedisRateLimiter to keep the "
                "limit in each process while Redis is away."
            ) from error
        if not self._degraded:
            self._degraded = True
            logger.warning(
                "Redis at %s did not answer (%s): keeping the rate limit %r (%s) in this process "
                "alone until it does; processes together may exceed it meanwhile",
                self._address,
                reason,
                self._name,
                self._limit,
            )
        self._fallback_until = asyncio.get_running_loop().time() + RETRY_REDIS_AFTER
        return await self._fallback.acquire(operation)

    async def release(self, operation: str, permit: Permit) -> None:
        """After a 429, pause every process sharing the budget for the wait Whop asked for."""
        if not isinstance(permit, _SharedPermit):
            if self._fallback is not None:
                await self._fallback.release(operation, permit)
            return
        if permit.status != 429:
            return
        wait = max(permit.retry_after or 0.0, MIN_RATE_LIMIT_PAUSE)
        try:
            await self._pause_script(
                keys=[self._operation(operation).pause_key], args=[round(wait * 1_000_000)]
            )
        except (RedisError, OSError) as exc:
            # The call that met the 429 still waits as asked; only the other processes miss it.
            logger.warning(
                "Could not tell the other processes through Redis at %s to pause %.3f s after a "
                "429 (%s: %s)",
                self._address,
                wait,
                type(exc).__name__,
                shorten(str(exc), 200),
            )

    def pacing_rate(self, operation: str) -> float | None:
        if self._fallback is not None and self._degraded:
            return self._fallback.pacing_rate(operation)
        return None

    async def aclose(self) -> None:
        """Close the Redis connection this limiter made from a URL; a client of yours stays open."""
        if self._owns_redis:
            await self._redis.aclose()

    async def __aenter__(self) -> RedisRateLimiter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"RedisRateLimiter({self._limit!r}, name={self._name!r}, redis={self._address!r}, "
            f"on_unavailable={self._on_unavailable!r})"
        )
