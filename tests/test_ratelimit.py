"""The client-wide rate limiter: pacing seen at the server, shared pauses, learning, properties."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import pytest

from whop_async import (
    DEFAULT_RATE_LIMIT,
    AsyncWhop,
    Backoff,
    BulkStats,
    InvalidParamsError,
    LocalRateLimiter,
    RateLimit,
    RateLimitError,
    Unlimited,
    gather_notifications,
)
from whop_async._ratelimit import MIN_RATE_LIMIT_PAUSE, safe_window
from whop_async.testing import FakeClock, ScriptedResponse, WhopEmulator

MakeClient = Callable[..., AsyncWhop]
SEND: dict[str, Any] = {"account_id": "biz_1", "title": "Hi", "content": "Hello"}
OPERATION = "POST /notifications"


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds, failing after ``timeout`` seconds instead of hanging."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def keys(server: WhopEmulator) -> list[str]:
    """The ``Idempotency-Key`` of each request the server received, in arrival order."""
    return [request.headers["Idempotency-Key"] for request in server.requests]


def rate_limited_body(seconds: int) -> dict[str, Any]:
    message = f"Try again in {seconds} second{'s' if seconds != 1 else ''}."
    return {"error": {"type": "rate_limit_exceeded", "message": message}}


# The value


def test_the_default_is_whops_documented_limit() -> None:
    assert RateLimit(600, per=60.0) == DEFAULT_RATE_LIMIT
    assert DEFAULT_RATE_LIMIT.rate == 10.0
    assert str(DEFAULT_RATE_LIMIT) == "600/60s"


def test_a_big_send_takes_as_long_as_the_limit_says() -> None:
    hours, rest = divmod(DEFAULT_RATE_LIMIT.duration(100_000), 3600)
    assert (hours, rest // 60) == (2, 46)  # 10,000 s: about 2 h 47 min


@pytest.mark.parametrize(
    ("text", "expected"),
    [("600/60", RateLimit(600, per=60.0)), ("60/6", RateLimit(60, per=6.0)), ("5", RateLimit(5))],
)
def test_a_limit_reads_from_text(text: str, expected: RateLimit) -> None:
    assert RateLimit.parse(text) == expected


@pytest.mark.parametrize("text", ["", "600/", "/60", "ten/60", "600/0", "0/60", "-1/60"])
def test_a_limit_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(InvalidParamsError, match="rate_limit"):
        RateLimit.parse(text)


@pytest.mark.parametrize(
    ("requests", "per", "field"),
    [(0, 1.0, "rate_limit.requests"), (True, 1.0, "rate_limit.requests"),
     (1.5, 1.0, "rate_limit.requests"),
     (10, 0, "rate_limit.per"), (10, -1.0, "rate_limit.per"), (10, math.inf, "rate_limit.per"),
     (10, "60", "rate_limit.per")],
)  # fmt: skip
def test_a_limit_is_checked_when_built(requests: Any, per: Any, field: str) -> None:
    with pytest.raises(InvalidParamsError) as caught:
        RateLimit(requests, per=per)

    assert caught.value.field == field


def test_the_client_says_which_limit_it_keeps(make_client: MakeClient) -> None:
    assert make_client().rate_limit == DEFAULT_RATE_LIMIT
    assert isinstance(make_client().rate_limiter, LocalRateLimiter)
    assert make_client(rate_limit=RateLimit(5, per=1.0)).rate_limit == RateLimit(5, per=1.0)
    unlimited = make_client(rate_limit=None)
    assert unlimited.rate_limit is None
    assert isinstance(unlimited.rate_limiter, Unlimited)
    with pytest.raises(InvalidParamsError, match="rate_limit"):
        make_client(rate_limit=600)


# Pacing, measured where it matters: at the server


async def test_single_calls_never_exceed_the_limit_at_the_server(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    limit = RateLimit(4, per=0.4)
    client = make_client(rate_limit=limit)

    for _ in range(10):
        await client.notifications.create(**SEND)

    # At most 4 of the 10 in any 0.4 s the server saw: the 5th and the 9th waited a window.
    assert len(whop_emulator.notifications) == 10
    assert whop_emulator.busiest_window(limit.per) <= limit.requests


async def test_a_bulk_send_and_single_calls_share_one_budget(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    limit = RateLimit(5, per=0.5)
    client = make_client(rate_limit=limit)
    items = ({**SEND, "title": f"t{index}"} for index in range(12))

    await asyncio.gather(
        gather_notifications(client, items, concurrency=4),
        *(client.notifications.create(**SEND) for _ in range(3)),
    )

    assert whop_emulator.request_count == 15
    assert whop_emulator.busiest_window(limit.per) <= limit.requests


async def test_with_options_copies_share_the_limiter(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    limit = RateLimit(3, per=0.5)
    client = make_client(rate_limit=limit)
    patient = client.with_options(timeout=30.0)
    pinned = client.with_options(api_version="2026-08-21")

    assert patient.rate_limiter is pinned.rate_limiter is client.rate_limiter
    await asyncio.gather(
        *(copy.notifications.create(**SEND) for copy in [client, patient, pinned] * 3)
    )

    assert whop_emulator.busiest_window(limit.per) <= limit.requests


async def test_waiting_for_the_limiter_is_not_part_of_an_attempts_timeout(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(rate_limit=RateLimit(1, per=0.6), timeout=0.3, max_retries=0)

    await client.notifications.create(**SEND)
    await client.notifications.create(**SEND)  # waits ~0.6 s first, then has its full 0.3 s

    assert len(whop_emulator.notifications) == 2


async def test_a_call_waiting_for_the_limiter_can_be_cancelled(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    clock = FakeClock()
    window = safe_window(0.3)
    client = make_client(rate_limit=RateLimit(1, per=0.3), clock=clock)
    await client.notifications.create(**SEND)

    waiting = asyncio.ensure_future(client.notifications.create(**SEND))
    await until(lambda: clock.sleepers == pytest.approx([window]))
    await clock.advance(0.2)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    after = asyncio.ensure_future(client.notifications.create(**SEND))
    await until(lambda: len(clock.sleepers) == 1)

    # The cancelled call took no slot and left nothing held: the next one waits only for what
    # is left of the first one's window (a slot taken at 0.2 s would make it wait 0.35 s).
    assert clock.sleepers == pytest.approx([window - 0.2])
    assert whop_emulator.request_count == 1
    await clock.advance(window - 0.2)
    await asyncio.wait_for(after, timeout=5)
    assert whop_emulator.request_count == 2


async def test_no_rate_limit_sends_everything_at_once(make_client: MakeClient) -> None:
    async with WhopEmulator(rate_limit=None, response_delay=0.2) as server:
        client = make_client(base_url=server.base_url, rate_limit=None)
        await asyncio.gather(*(client.notifications.create(**SEND) for _ in range(20)))

    assert server.peak_in_flight == 20


# Whop's 429: the wait in the message, a pause for everyone, learning


async def test_a_single_call_waits_as_long_as_the_message_says_and_succeeds(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    clock = FakeClock(auto_advance=True)
    client = make_client(backoff=Backoff(jitter=0), max_retries=0, clock=clock)
    whop_emulator.fail_next(1, status=429, body=rate_limited_body(1))

    response = await client.notifications.create(**SEND)

    assert response.success
    assert clock.slept == [1.0]  # the message's second, not the 0.5 s backoff
    first, retry = keys(whop_emulator)
    assert first == retry
    assert whop_emulator.status_counts == {429: 1, 200: 1}


async def test_a_retry_after_header_wins_over_the_message(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    clock = FakeClock(auto_advance=True)
    client = make_client(backoff=Backoff(jitter=0), max_retries=0, clock=clock)
    whop_emulator.fail_next(
        1, status=429, body=rate_limited_body(5), headers={"retry-after-ms": "100"}
    )

    await client.notifications.create(**SEND)

    assert clock.slept == [0.1]
    assert whop_emulator.status_counts == {429: 1, 200: 1}


async def test_the_wait_in_the_message_is_capped(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    clock = FakeClock(auto_advance=True)
    client = make_client(backoff=Backoff(jitter=0, max_retry_after=0.2), max_retries=0, clock=clock)
    whop_emulator.fail_next(1, status=429, body=rate_limited_body(3600))

    await client.notifications.create(**SEND)

    assert clock.slept == [0.2]
    assert whop_emulator.status_counts == {429: 1, 200: 1}


async def test_a_429_pauses_every_call_of_the_client(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    clock = FakeClock()
    client = make_client(
        backoff=Backoff(jitter=0), rate_limit=RateLimit(1000, per=1.0), clock=clock
    )
    whop_emulator.fail_next(1, status=429, body=rate_limited_body(1))

    first = asyncio.ensure_future(client.notifications.create(**SEND))
    await until(lambda: clock.sleepers == [1.0])  # met the 429: waits the second it asked for
    other = asyncio.ensure_future(client.notifications.create(**SEND))
    await until(lambda: len(clock.sleepers) == 2)

    # The other call, started during the pause, waits it out before reaching the server.
    assert clock.sleepers == [1.0, 1.0]
    assert whop_emulator.request_count == 1
    await clock.advance(1.0)
    await asyncio.wait_for(asyncio.gather(first, other), timeout=5)
    assert whop_emulator.status_counts == {429: 1, 200: 2}
    assert keys(whop_emulator)[0] in keys(whop_emulator)[1:]  # the first call's retry
    assert len(whop_emulator.notifications) == 2


async def test_a_server_answering_only_429s_gets_a_handful_of_requests_a_minute(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    # Finding 2 of issue 16: 388 requests in 20 s from one call. Time is the fake clock's, so
    # the minute of waits passes at once; every request still crosses the socket.
    clock = FakeClock(auto_advance=True)
    client = make_client(
        clock=clock, backoff=Backoff(jitter=0), max_retries=0, max_rate_limit_wait=60.0
    )
    storm = {"error": {"type": "rate_limit_exceeded", "message": "Slow down."}}
    whop_emulator.fail_next(100, status=429, body=storm, headers={"retry-after-ms": "10"})

    with pytest.raises(RateLimitError):  # once its waits would pass the minute it may wait
        await client.notifications.create(**SEND)

    # 10 ms asked (50 ms, the floor), then doubling: the seventh 429 would need 32 s more.
    assert whop_emulator.request_count == 7
    assert clock.now() == pytest.approx(0.05 + 1 + 2 + 4 + 8 + 16)


async def test_429s_stop_failing_calls_only_past_the_wait_bound(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    clock = FakeClock(auto_advance=True)
    client = make_client(max_retries=0, max_rate_limit_wait=0.12, clock=clock)
    whop_emulator.fail_next(10, status=429, body={"error": {"type": "rate_limit_exceeded"}})

    with pytest.raises(RateLimitError) as caught:
        await client.notifications.create(**SEND)

    # Two minimum pauses (0.05 s) fit in 0.12 s; the third 429 needs a retry there is not.
    assert clock.slept == [MIN_RATE_LIMIT_PAUSE] * 2
    assert whop_emulator.request_count == 3
    assert (caught.value.type, caught.value.code) == ("rate_limit_exceeded", None)


async def test_a_client_that_believes_whops_default_learns_a_shorter_window() -> None:
    # The server allows the same 10 a second as the default client, but per 1 s rather than per
    # 60 s: the default client's first burst meets 429s, after which it must send smoothly.
    async with (
        WhopEmulator(rate_limit=RateLimit(10, per=1.0), rate_limit_window="sliding") as server,
        AsyncWhop(server.api_key, base_url=server.base_url) as client,
    ):
        stats = BulkStats()
        items = ({**SEND, "title": f"t{index}"} for index in range(40))
        await gather_notifications(client, items, concurrency=4, stats=stats)
        pace = client.rate_limiter.pacing_rate(OPERATION)

    assert stats.succeeded == 40
    assert stats.rate_limited <= 8  # the first burst's, not one per window
    assert pace is not None
    assert 5 <= pace <= 10


async def test_a_stray_429_with_a_short_wait_teaches_nothing(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(rate_limit=RateLimit(10_000, per=1.0))
    whop_emulator.script(
        *[ScriptedResponse() for _ in range(20)],
        ScriptedResponse(status=429, body=rate_limited_body(1), headers={"retry-after-ms": "1"}),
    )
    await gather_notifications(client, [SEND] * 21, concurrency=1)

    # A 1 ms wait is no evidence of a smaller budget per second: the pause answered it.
    assert client.rate_limiter.pacing_rate(OPERATION) is None
