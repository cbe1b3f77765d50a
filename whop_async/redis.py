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
* **What a 429 teaches is shared too**: the smaller budget learned from one (see
  ``_sliding_log.py``) is kept in Redis, and every process keeps to it.
* In one process, one waiter per operation asks Redis at a time (first come, first served), so
  a crowd of waiting calls costs one round trip per freed slot, not one each.

The policy is ``LocalRateLimiter``'s, to the line: only the store differs.

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
import secrets
import time
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
from ._ratelimit import DEFAULT_RATE_LIMIT, RateLimit, safe_window
from ._sliding_log import (
    Admission,
    Learned,
    MemoryStore,
    PauseOutcome,
    SlidingLogLimiter,
    Window,
)

__all__ = ["KEY_PREFIX", "RateLimiterUnavailableError", "RedisRateLimiter"]

logger = logging.getLogger("whop_async")

#: Every key the limiter writes starts with this.
KEY_PREFIX: Final = "whop_async:ratelimit"
#: With ``on_unavailable="local"``, Redis is asked again this many seconds after it failed.
RETRY_REDIS_AFTER: Final = 5.0
#: Connect and read timeout of a connection made from a URL: a dead Redis is told in seconds.
REDIS_TIMEOUT: Final = 2.0

_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
_MICROS: Final = 1_000_000

# The three atomic steps of the store, each on Redis's clock, in microseconds (-1: none).
# KEYS: the log (a sorted set of start times), the pause (pause-until), the learned budget
# ("requests per_us at_us burst_us"), the accepted log (the starts not refused). ARGV: a member
# unique to this attempt, the configured (requests, window_us), then the learned one if any,
# which counts the accepted log. Returns {wait_us, now_us, paused, pause_until_us, learned
# requests, per_us, at_us, burst_us}: wait 0 means the attempt was admitted and logged. Numbers
# go to Redis through '%.0f': Lua's own conversion keeps 14 digits, too few for microseconds
# since the epoch.
_TRY_START: Final = """
local function f(x) return string.format('%.0f', x) end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local paused = tonumber(redis.call('GET', KEYS[2]) or '-1')
local learned = redis.call('GET', KEYS[3])
local requests, per, at, burst = 0, 0, 0, -1
if learned then
  local fields = {}
  for field in string.gmatch(learned, '%S+') do fields[#fields + 1] = tonumber(field) end
  requests, per, at, burst = fields[1], fields[2], fields[3], fields[4] or -1
end
if paused > now then
  return {paused - now, now, 1, paused, requests, per, at, burst}
end
local function wait_in(log, limit, window)
  local count = redis.call('ZCOUNT', log, '(' .. f(now - window), '+inf')
  if count < limit then return 0 end
  local nth = redis.call('ZREVRANGE', log, limit - 1, limit - 1, 'WITHSCORES')
  return math.max(tonumber(nth[2]) + window - now, 1)
end
local longest = tonumber(ARGV[3])
local wait = wait_in(KEYS[1], tonumber(ARGV[2]), longest)
if ARGV[4] then
  longest = math.max(longest, tonumber(ARGV[5]))
  wait = math.max(wait, wait_in(KEYS[4], tonumber(ARGV[4]), tonumber(ARGV[5])))
end
if wait > 0 then
  return {wait, now, 0, paused, requests, per, at, burst}
end
for i = 1, 4, 3 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', f(now - longest))
  redis.call('ZADD', KEYS[i], f(now), ARGV[1])
  redis.call('PEXPIRE', KEYS[i], f(math.ceil(longest / 1000) + 1000))
end
return {0, now, 0, paused, requests, per, at, burst}
"""

# KEYS: the pause, the accepted log, the 429s of the latest burst that met any ("burst_us
# count"). ARGV: the wait, the time to count starts from, the burst of this 429, how long to
# keep the pause and the count past the wait (ms), the refused attempt's start. Pushes
# pause-until out, never back, takes one start at that time off the accepted log, and counts
# this 429 unless a later burst has met some. The pause outlives its wait by a window: its end
# is the start of the next burst (the epoch of try_start), which the next 429 counts from.
# Returns {starts counted, the first of them (-1: none), 429s of the burst (0: too late)}.
_PAUSE: Final = """
local function f(x) return string.format('%.0f', x) end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local wait = tonumber(ARGV[1])
local paused = tonumber(redis.call('GET', KEYS[1]) or '-1')
local keep = f(math.ceil(wait / 1000) + tonumber(ARGV[4]))
if now + wait > paused then
  redis.call('SET', KEYS[1], f(now + wait), 'PX', keep)
end
local burst = tonumber(ARGV[3])
local latest, refused = -2, 0
local held = redis.call('GET', KEYS[3])
if held then
  local fields = {}
  for field in string.gmatch(held, '%S+') do fields[#fields + 1] = tonumber(field) end
  latest, refused = fields[1], fields[2]
end
if burst >= latest then
  if burst > latest then refused = 0 end
  refused = refused + 1
  redis.call('SET', KEYS[3], f(burst) .. ' ' .. refused, 'PX', keep)
else
  refused = 0
end
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[5], ARGV[5], 'LIMIT', 0, 1)
if gone[1] then redis.call('ZREM', KEYS[2], gone[1]) end
local count = redis.call('ZCOUNT', KEYS[2], ARGV[2], '+inf')
local first = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[2], '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
return {count, first[2] or -1, refused}
"""

# KEYS: the learned budget. ARGV: requests, per_us, how long to keep it (ms), burst_us.
# Keeps the lesson held when it is better (Learned.replaced_by). Returns the lesson held, as
# {requests, per_us, at_us, burst_us}.
_LEARN: Final = """
local requests, burst = tonumber(ARGV[1]), tonumber(ARGV[4])
local held = redis.call('GET', KEYS[1])
if held then
  local fields = {}
  for field in string.gmatch(held, '%S+') do fields[#fields + 1] = tonumber(field) end
  local held_burst = fields[4] or -1
  if burst < held_burst or (burst == held_burst and requests >= fields[1]) then
    return {fields[1], fields[2], fields[3], held_burst}
  end
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. string.format('%.0f', now) ..
  ' ' .. ARGV[4], 'PX', ARGV[3])
return {requests, tonumber(ARGV[2]), now, burst}
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


def _seconds(micros: float) -> float:
    return micros / _MICROS


def _micros(seconds: float) -> int:
    return round(seconds * _MICROS)


def _time_or_none(micros: int) -> float:
    """A time the scripts return, -1 standing for none (-inf)."""
    return _seconds(micros) if micros >= 0 else -math.inf


def _micros_or_none(seconds: float) -> int:
    """A time for the scripts: -1 for none (-inf)."""
    return _micros(seconds) if seconds > -math.inf else -1


def _learned(requests: int, per: int, at: int, burst: int) -> Learned | None:
    """The lesson the scripts return (0 requests: none)."""
    if not requests:
        return None
    return Learned(requests, _seconds(per), _seconds(at), _time_or_none(burst))


class _WallClock:
    """Seconds since the epoch: the fallback's times then compare with Redis's ``TIME``."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _RedisStore:
    """The store of a ``RedisRateLimiter``: three Lua scripts, or a local fallback meanwhile."""

    def __init__(
        self,
        redis: Redis,
        *,
        name: str,
        limit: RateLimit,
        on_unavailable: Literal["fail", "local"],
    ) -> None:
        self._redis = redis
        self._name = name
        self._limit = limit
        self.address = _address(redis)
        self._try_start = redis.register_script(_TRY_START)
        self._pause = redis.register_script(_PAUSE)
        self._learn = redis.register_script(_LEARN)
        self._fallback = (
            MemoryStore(limit, clock=_WallClock()) if on_unavailable == "local" else None
        )
        self._fallback_until = -math.inf
        self._degraded = False
        self._keep_pause_ms = math.ceil(safe_window(limit.per) * 1000) + 1000

    @property
    def shared(self) -> bool:
        return not self._degraded

    def _keys(self, operation: str) -> tuple[str, str, str, str, str]:
        prefix = f"{KEY_PREFIX}:{{{self._name}}}:{operation}"
        return (
            f"{prefix}:log",
            f"{prefix}:pause",
            f"{prefix}:learned",
            f"{prefix}:accepted",
            f"{prefix}:refused",
        )

    def _use_fallback(self) -> bool:
        return self._fallback is not None and time.monotonic() < self._fallback_until

    async def try_start(self, operation: str, limit: Window, learned: Window | None) -> Admission:
        if self._use_fallback():
            assert self._fallback is not None
            return await self._fallback.try_start(operation, limit, learned)
        args: list[str | int] = [secrets.token_hex(8), limit[0], _micros(limit[1])]
        if learned is not None:
            args += [learned[0], _micros(learned[1])]
        try:
            answer = await self._try_start(keys=self._keys(operation)[:4], args=args)
        except (RedisError, OSError) as exc:
            fallback = self._unavailable(exc)
            return await fallback.try_start(operation, limit, learned)
        if self._degraded:
            self._degraded = False
            logger.info(
                "Redis at %s answers again: the rate limit %r is shared again",
                self.address,
                self._name,
            )
        wait, now, paused, pause_until, *lesson = (int(value) for value in answer)
        return Admission(
            _seconds(wait),
            _seconds(now),
            bool(paused),
            _time_or_none(pause_until),
            _learned(*lesson),
        )

    def _unavailable(self, error: Exception) -> MemoryStore:
        """The store to use while Redis does not answer, or the error that says it does not."""
        reason = f"{type(error).__name__}: {shorten(str(error), 200)}"
        if self._fallback is None:
            raise RateLimiterUnavailableError(
                f"The shared rate limit {self._name!r} could not be checked: Redis at "
                f"{self.address} did not answer ({reason}). Nothing was sent. Start Redis or "
                "fix its address, or pass on_unavailable='local' to RedisRateLimiter to keep the "
                "limit in each process while Redis is away."
            ) from error
        if not self._degraded:
            self._degraded = True
            logger.warning(
                "Redis at %s did not answer (%s): keeping the rate limit %r (%s) in this process "
                "alone until it does; processes together may exceed it meanwhile",
                self.address,
                reason,
                self._name,
                self._limit,
            )
        self._fallback_until = time.monotonic() + RETRY_REDIS_AFTER
        return self._fallback

    async def pause(
        self, operation: str, seconds: float, *, since: float, burst: float, start: float
    ) -> PauseOutcome:
        if self._use_fallback():
            assert self._fallback is not None
            return await self._fallback.pause(
                operation, seconds, since=since, burst=burst, start=start
            )
        _, pause_key, _, accepted_key, refused_key = self._keys(operation)
        try:
            count, first, refused = await self._pause(
                keys=[pause_key, accepted_key, refused_key],
                args=[
                    _micros(seconds),
                    _micros(since) if since > -math.inf else "-inf",
                    _micros_or_none(burst),
                    self._keep_pause_ms,
                    _micros(start),
                ],
            )
        except (RedisError, OSError) as exc:
            # The call that met the 429 still waits as asked; only the other processes miss it.
            logger.warning(
                "Could not tell the other processes through Redis at %s to pause %.3f s after a "
                "429 (%s: %s)",
                self.address,
                seconds,
                type(exc).__name__,
                shorten(str(exc), 200),
            )
            return PauseOutcome(0, None, 0)  # as a 429 too late: nothing to learn from
        return PauseOutcome(
            int(count), _seconds(float(first)) if float(first) >= 0 else None, int(refused)
        )

    async def learn(self, operation: str, budget: Learned, *, keep_for: float) -> Learned:
        if self._use_fallback():
            assert self._fallback is not None
            return await self._fallback.learn(operation, budget, keep_for=keep_for)
        try:
            held = await self._learn(
                keys=[self._keys(operation)[2]],
                args=[
                    budget.requests,
                    _micros(budget.per),
                    max(1, round(keep_for * 1000)),
                    _micros_or_none(budget.burst),
                ],
            )
        except (RedisError, OSError) as exc:
            logger.warning(
                "Could not share a rate limit learned from a 429 through Redis at %s (%s: %s)",
                self.address,
                type(exc).__name__,
                shorten(str(exc), 200),
            )
            return budget  # kept in this process at least
        learned = _learned(*(int(value) for value in held))
        assert learned is not None
        return learned


class RedisRateLimiter(SlidingLogLimiter):
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
            a warning and keeps ``limit`` in this process alone until Redis answers again,
            asked every ``RETRY_REDIS_AFTER`` seconds. Meanwhile the processes together may
            exceed the limit, and Whop's 429s slow them down.

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
                client: Redis = Redis.from_url(
                    redis,
                    socket_connect_timeout=REDIS_TIMEOUT,
                    socket_timeout=REDIS_TIMEOUT,
                    retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=2),
                )
            except ValueError as exc:
                raise InvalidParamsError("redis", f"is not a Redis URL: {exc}") from None
            self._owns_redis = True
        elif isinstance(redis, Redis):
            client = redis
            self._owns_redis = False
        else:
            raise InvalidParamsError(
                "redis", f"must be a Redis URL or a redis.asyncio.Redis, got {type(redis).__name__}"
            )
        self._redis = client
        self._name = name
        self._on_unavailable = on_unavailable
        self._shared_store = _RedisStore(
            client, name=name, limit=limit, on_unavailable=on_unavailable
        )
        super().__init__(limit, self._shared_store)

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
    def name(self) -> str:
        """The budget this limiter draws from (safe to log: never the API key itself)."""
        return self._name

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
            f"RedisRateLimiter({self._limit!r}, name={self._name!r}, "
            f"redis={self._shared_store.address!r}, on_unavailable={self._on_unavailable!r})"
        )
