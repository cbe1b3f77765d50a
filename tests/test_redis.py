"""RedisRateLimiter against a real redis-server: one budget for many clients, Redis's clock,
a 429 that pauses everyone, cancellation, and what happens when Redis is away."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis_fixtures import free_port, redis_server, redis_url, require, start_redis

require("redis")

import redis.asyncio as aioredis  # noqa: E402
from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: E402

from whop_async import (  # noqa: E402
    AsyncWhop,
    Backoff,
    InvalidParamsError,
    Permit,
    RateLimit,
    RateLimitWaitEvent,
    WhopError,
    WhopEvent,
    gather_notifications,
)
from whop_async.redis import KEY_PREFIX, RateLimiterUnavailableError, RedisRateLimiter  # noqa: E402
from whop_async.testing import ScriptedResponse, WhopEmulator, most_in_any_window  # noqa: E402

__all__ = ["redis_server", "redis_url"]  # fixtures used by name

OPERATION = "POST /notifications"
SECRET_KEY = "whop_sk_live_0123456789abcdef"


def notification(index: int) -> dict[str, Any]:
    return {"company_id": "biz_scale", "title": f"t{index}", "content": "hello"}


async def until_set(redis: aioredis.Redis, key: str) -> None:
    while await redis.pttl(key) <= 0:
        await asyncio.sleep(0.005)


async def script_calls(redis: aioredis.Redis) -> int:
    """How many times Redis has run one of the limiters' scripts (EVALSHA) so far."""
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def until_more_script_calls_than(redis: aioredis.Redis, calls: int) -> None:
    while await script_calls(redis) <= calls:
        await asyncio.sleep(0.005)


#: How much later than it started a request may reach the emulator on a busy machine: the
#: tests that pace at exactly the emulator's limit count arrivals in a window this much shorter.
ARRIVAL_JITTER = 0.1


@contextlib.asynccontextmanager
async def client_with(
    limiter: Any, server: WhopEmulator, **options: Any
) -> AsyncIterator[AsyncWhop]:
    async with AsyncWhop(
        server.api_key, base_url=server.base_url, rate_limit=limiter, backoff=Backoff(), **options
    ) as client:
        yield client


async def test_two_clients_with_their_own_limiters_share_one_budget(redis_url: str) -> None:
    limit = RateLimit(10, per=1.0)
    async with (
        WhopEmulator(rate_limit=limit, rate_limit_window="sliding") as server,
        RedisRateLimiter(redis_url, limit=limit, name="shared") as first,
        RedisRateLimiter(redis_url, limit=limit, name="shared") as second,
        client_with(first, server) as client_a,
        client_with(second, server) as client_b,
    ):
        await asyncio.gather(
            gather_notifications(client_a, (notification(i) for i in range(10))),
            gather_notifications(client_b, (notification(i) for i in range(10, 20))),
        )

    # Never more than 10 in any second the server saw, less the delay a busy machine adds on
    # the way: the second ten waited for the first ten's window, whichever client sent them.
    assert len(set(server.idempotency_keys())) == len(server.notifications) == 20
    arrivals = [request.received_at for request in server.requests]
    assert most_in_any_window(arrivals, limit.per - ARRIVAL_JITTER) <= limit.requests


async def test_a_429_seen_by_one_process_pauses_the_others(redis_url: str) -> None:
    events: list[WhopEvent] = []
    async with (
        WhopEmulator(rate_limit=None) as server,
        RedisRateLimiter(redis_url, limit=RateLimit(100, per=1.0), name="paused") as first,
        RedisRateLimiter(redis_url, limit=RateLimit(100, per=1.0), name="paused") as second,
        aioredis.Redis.from_url(redis_url) as redis,
        client_with(first, server) as client_a,
        client_with(second, server, on_event=events.append) as client_b,
    ):
        server.script(
            ScriptedResponse(
                status=429,
                body={
                    "error": {"type": "rate_limit_exceeded", "message": "Try again in 1 second."}
                },
            )
        )
        sending = asyncio.ensure_future(client_a.notifications.create(**notification(0)))
        pause_key = f"{KEY_PREFIX}:{{paused}}:{OPERATION}:pause"
        await asyncio.wait_for(until_set(redis, pause_key), 5.0)  # the 429 was recorded
        await client_b.notifications.create(**notification(1))
        await sending

    # The other process's limiter held its call back for the pause, not for its own window.
    waits = [event for event in events if isinstance(event, RateLimitWaitEvent)]
    assert [(event.attempt, event.kind) for event in waits] == [(1, "pause")]
    assert server.status_counts == {429: 1, 200: 2}


async def test_the_log_and_the_pause_use_redis_clock_not_the_hosts(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = RateLimit(3, per=60.0)
    async with (
        RedisRateLimiter(redis_url, limit=limit, name="clock") as ahead,
        RedisRateLimiter(redis_url, limit=limit, name="clock") as honest,
        aioredis.Redis.from_url(redis_url) as redis,
    ):
        real_time = time.time
        with monkeypatch.context() as patch:  # this host's wall clock is an hour ahead
            patch.setattr(time, "time", lambda: real_time() + 3600)
            patch.setattr(time, "time_ns", lambda: (real_time() + 3600) * 10**9)
            for _ in range(3):
                await ahead.acquire(OPERATION)
            permit = await ahead.acquire("POST /other")
            permit.record(429, retry_after=30.0)
            await ahead.release("POST /other", permit)
        # The budget is spent, whatever the other host's clock said.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(honest.acquire(OPERATION), 0.3)

        seconds, microseconds = await redis.time()
        redis_now = seconds + microseconds / 1e6
        log = await redis.zrange(f"{KEY_PREFIX}:{{clock}}:{OPERATION}:log", 0, -1, withscores=True)
        pause = float(await redis.get(f"{KEY_PREFIX}:{{clock}}:POST /other:pause"))

    assert len(log) == 3
    assert all(abs(score / 1e6 - redis_now) < 5 for _, score in log)
    assert pause / 1e6 - redis_now == pytest.approx(30.0, abs=2.0)


async def test_cancelling_a_waiting_call_takes_nothing_from_the_budget(redis_url: str) -> None:
    limit = RateLimit(2, per=0.5)
    async with (
        RedisRateLimiter(redis_url, limit=limit, name="cancel") as limiter,
        aioredis.Redis.from_url(redis_url) as redis,
    ):
        await limiter.acquire(OPERATION)
        await limiter.acquire(OPERATION)
        calls = await script_calls(redis)
        waiting = asyncio.ensure_future(limiter.acquire(OPERATION))
        # Redis answered its attempt to start (with a wait: the log holds two of two).
        await asyncio.wait_for(until_more_script_calls_than(redis, calls), 5.0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert await redis.zcard(f"{KEY_PREFIX}:{{cancel}}:{OPERATION}:log") == 2

        # The lock was let go: the next call waits for the window, as the shared log says.
        permit = await asyncio.wait_for(limiter.acquire(OPERATION), 5.0)

    assert permit.wait_kind == "shared"


async def test_processes_learn_the_requests_of_a_burst_the_server_took(redis_url: str) -> None:
    # Two processes share a burst; the server took 10 of its 12 requests and refused two, one
    # started before some it took and one after them, each answered in the other process.
    learned_key = f"{KEY_PREFIX}:{{burst}}:{OPERATION}:learned"

    async def lesson(redis: aioredis.Redis) -> int:
        return int((await redis.get(learned_key)).split()[0])

    async with (
        RedisRateLimiter(redis_url, name="burst") as first,
        RedisRateLimiter(redis_url, name="burst") as second,
        aioredis.Redis.from_url(redis_url) as redis,
    ):
        for _ in range(7):
            permit = await first.acquire(OPERATION)
            permit.record(200)
            await first.release(OPERATION, permit)
        refused = await first.acquire(OPERATION)
        taken = [await second.acquire(OPERATION) for _ in range(3)]
        straggler = await second.acquire(OPERATION)

        refused.record(429, retry_after=5.0)
        await first.release(OPERATION, refused)
        provisional = await lesson(redis)  # the four still in flight count as let through
        straggler.record(429, retry_after=5.0)
        await second.release(OPERATION, straggler)
        for permit in taken:
            permit.record(200)
            await second.release(OPERATION, permit)

        assert (provisional, await lesson(redis)) == (11, 10)
        pace = second.pacing_rate(OPERATION)
        assert pace is not None
        assert 10 / 5.3 < pace < 10 / 5.0  # 10 in the burst's few ms plus the 5 s asked


async def test_a_burst_after_a_pause_is_counted_from_the_pauses_end(redis_url: str) -> None:
    # The pause's end is where the next burst starts: it must outlive the wait, or a 429 of
    # that burst counts the one before it too.
    async with RedisRateLimiter(redis_url, limit=RateLimit(100, per=2.0), name="epoch") as limiter:

        async def attempt(status: int = 200) -> None:
            permit = await limiter.acquire(OPERATION)
            permit.record(status, retry_after=0.1 if status == 429 else None)
            await limiter.release(OPERATION, permit)

        for _ in range(5):
            await attempt()
        await attempt(429)
        await asyncio.sleep(1.2)  # past the pause, and past the second after it
        for _ in range(3):
            await attempt()
        await attempt(429)

        pace = limiter.pacing_rate(OPERATION)
        assert pace is not None
        assert 3 / 0.5 < pace < 3 / 0.1  # 3 in a few ms and the 0.1 s asked, not 5 or 8


async def test_a_refused_attempt_takes_no_room_from_the_shared_learned_budget(
    redis_url: str,
) -> None:
    limit = RateLimit(100, per=60.0)
    async with (
        RedisRateLimiter(redis_url, limit=limit, name="accepted") as one,
        RedisRateLimiter(redis_url, limit=limit, name="accepted") as two,
    ):

        async def attempt(
            limiter: RedisRateLimiter, status: int = 200, wait: float | None = None
        ) -> Permit:
            permit = await limiter.acquire(OPERATION)
            permit.record(status, retry_after=wait)
            await limiter.release(OPERATION, permit)
            return permit

        await attempt(one)
        await attempt(one)
        await attempt(one, 429, wait=1.0)  # teaches 2 per second or so
        await asyncio.sleep(1.2)  # the pause is over and the lesson's starts have left
        await attempt(two)
        await attempt(two, 429)  # refused: the server did not count it
        await asyncio.sleep(0.1)  # past its minimum pause
        third = await attempt(one)

    assert one.pacing_rate(OPERATION) is not None
    assert (third.waited, third.wait_kind) == (0.0, None)  # 1 of 2 taken, not 2 of 2


async def test_unreachable_redis_fails_the_call_naming_redis(
    whop_logs: list[logging.LogRecord],
) -> None:
    port = free_port()
    async with (
        WhopEmulator() as server,
        RedisRateLimiter(f"redis://:hunter2@127.0.0.1:{port}/0", name="away") as limiter,
        client_with(limiter, server) as client,
    ):
        with pytest.raises(RateLimiterUnavailableError) as caught:
            await client.notifications.create(**notification(0))

    message = str(caught.value)
    assert isinstance(caught.value, WhopError)
    assert isinstance(caught.value.__cause__, RedisConnectionError)
    assert f"Redis at redis://127.0.0.1:{port}/0 did not answer" in message
    assert "Nothing was sent" in message
    assert "on_unavailable='local'" in message
    assert "hunter2" not in message + repr(limiter)
    assert server.request_count == 0


async def test_unreachable_redis_falls_back_to_a_local_limit_until_it_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, whop_logs: list[logging.LogRecord]
) -> None:
    monkeypatch.setattr("whop_async.redis.RETRY_REDIS_AFTER", 0.3)
    port = free_port()
    limit = RateLimit(5, per=0.5)
    async with (
        WhopEmulator(rate_limit=limit, rate_limit_window="sliding") as server,
        RedisRateLimiter(
            f"redis://127.0.0.1:{port}/0", limit=limit, name="fallback", on_unavailable="local"
        ) as limiter,
        client_with(limiter, server) as client,
    ):
        await gather_notifications(client, (notification(i) for i in range(8)))
        # Paced in this process meanwhile: every item delivered once, and no more than the
        # limit started in any window, as the server saw it, less the delay a busy machine
        # adds on the way. How many 429s that delay causes is timing, not the limiter's promise.
        assert len(set(server.idempotency_keys())) == len(server.notifications) == 8
        assert server.busiest_window(limit.per - ARRIVAL_JITTER) <= limit.requests
        warnings = [r.getMessage() for r in whop_logs if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert f"Redis at redis://127.0.0.1:{port}/0 did not answer" in warnings[0]

        redis_back = start_redis(tmp_path, port=port)
        try:
            await asyncio.sleep(0.3)
            await client.notifications.create(**notification(8))
            async with aioredis.Redis(port=port) as redis:
                assert await redis.zcard(f"{KEY_PREFIX}:{{fallback}}:{OPERATION}:log") == 1
        finally:
            redis_back.stop()

    assert any("answers again" in record.getMessage() for record in whop_logs)


async def test_the_name_derived_from_the_key_reveals_nothing_of_it(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, whop_logs: list[logging.LogRecord]
) -> None:
    limiter = RedisRateLimiter.for_api_key(redis_url, SECRET_KEY)
    monkeypatch.setenv("WHOP_API_KEY", SECRET_KEY)
    from_environment = RedisRateLimiter(redis_url)
    other = RedisRateLimiter.for_api_key(redis_url, SECRET_KEY + "x")
    try:
        permit = await limiter.acquire(OPERATION)
        permit.record(429, retry_after=0.1)
        await limiter.release(OPERATION, permit)
        async with aioredis.Redis.from_url(redis_url) as redis:
            keys = [key.decode() for key in await redis.keys("*")]
            values = [await redis.get(key) for key in keys if key.endswith(":pause")]
    finally:
        for each in (limiter, from_environment, other):
            await each.aclose()

    assert limiter.name == from_environment.name != other.name
    assert limiter.name.startswith("key-")
    assert len(limiter.name) == 20
    exposed = [limiter.name, repr(limiter), *keys, *map(str, values)]
    exposed += [record.getMessage() for record in whop_logs]
    for fragment in (SECRET_KEY[i : i + 8] for i in range(len(SECRET_KEY) - 7)):
        assert not any(fragment in text for text in exposed)


def test_without_a_name_or_whop_api_key_it_asks_for_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WHOP_API_KEY", raising=False)
    with pytest.raises(InvalidParamsError, match="for_api_key"):
        RedisRateLimiter("redis://127.0.0.1:1/0")


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"redis": "http://example.invalid"}, "redis"),
        ({"redis": 6379}, "redis"),
        ({"limit": 600}, "limit"),
        ({"name": "has space"}, "name"),
        ({"name": ""}, "name"),
        ({"on_unavailable": "retry"}, "on_unavailable"),
    ],
)
def test_bad_arguments_are_refused_before_any_io(arguments: dict[str, Any], field: str) -> None:
    options: dict[str, Any] = {"redis": "redis://127.0.0.1:1/0", "name": "n", **arguments}
    with pytest.raises(InvalidParamsError) as caught:
        RedisRateLimiter(options.pop("redis"), **options)
    assert caught.value.field == field
    with pytest.raises(InvalidParamsError):
        RedisRateLimiter.for_api_key("redis://127.0.0.1:1/0", "")


async def test_it_closes_a_connection_it_made_but_not_a_client_it_was_given(
    redis_url: str,
) -> None:
    async with aioredis.Redis.from_url(redis_url) as redis:
        limiter = RedisRateLimiter(redis, name="given", limit=RateLimit(5, per=1.0))
        await limiter.acquire(OPERATION)
        await limiter.aclose()
        assert await redis.ping()  # still open: it is the caller's
        assert repr(limiter).startswith("RedisRateLimiter(RateLimit(requests=5, per=1.0)")

    made = RedisRateLimiter(redis_url, name="made")
    await made.acquire(OPERATION)
    await made.aclose()  # a leaked connection would fail the test at garbage collection


async def test_a_429_redis_cannot_hear_of_is_logged_and_the_call_goes_on(
    tmp_path: Path, whop_logs: list[logging.LogRecord]
) -> None:
    server = start_redis(tmp_path)
    try:
        limiter = RedisRateLimiter(f"{server.url}/0", name="gone")
        permit = await limiter.acquire(OPERATION)
    finally:
        server.stop()
    permit.record(429, retry_after=1.0)
    await limiter.release(OPERATION, permit)  # no error: the call waits as Whop asked anyway
    await limiter.aclose()

    warnings = [r.getMessage() for r in whop_logs if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "Could not tell the other processes" in warnings[0]
    assert f"Redis at {server.url}/0" in warnings[0]


def test_a_unix_socket_address_is_shown_without_credentials() -> None:
    limiter = RedisRateLimiter("unix://:hunter2@/run/redis/redis.sock?db=2", name="socket")
    assert "redis='unix:///run/redis/redis.sock'" in repr(limiter)
    assert "hunter2" not in repr(limiter)
    assert limiter.name == "socket"
    assert limiter.limit == RateLimit(600, per=60.0)
