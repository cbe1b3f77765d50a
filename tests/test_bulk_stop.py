"""Ending a bulk send early without losing track of an item: a graceful stop, a cancellation
that reports, a fatal error that ends a stream, and counters that match the wire."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from whop_async import (
    AsyncWhop,
    AuthenticationError,
    Backoff,
    BatchAbortedError,
    BulkOutcome,
    BulkSendError,
    BulkStats,
    InvalidParamsError,
    NotificationCreateResponse,
    OutcomeUnknownError,
    RateLimit,
    gather_notifications,
    is_retryable,
    iter_notifications,
)
from whop_async.testing import WhopEmulator


def item(index: int) -> dict[str, Any]:
    return {"company_id": "biz_stop", "title": f"t{index}", "content": "hello"}


def items(count: int) -> Iterator[dict[str, Any]]:
    return (item(index) for index in range(count))


@contextlib.asynccontextmanager
async def server_and_client(
    *, rate_limit: RateLimit | None = None, **emulator_options: Any
) -> AsyncIterator[tuple[WhopEmulator, AsyncWhop]]:
    async with (
        WhopEmulator(rate_limit=None, **emulator_options) as server,
        AsyncWhop(
            server.api_key,
            base_url=server.base_url,
            backoff=Backoff.instant(),
            rate_limit=rate_limit,
        ) as client,
    ):
        yield server, client


async def until(condition: Any, timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds, failing after ``timeout`` seconds instead of hanging."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


# A graceful stop


async def test_a_stop_lets_sent_items_finish_and_returns_the_rest_unsent() -> None:
    async with server_and_client(response_delay=0.2) as (server, client):
        stop = asyncio.Event()
        send = asyncio.ensure_future(
            gather_notifications(
                client, items(40), concurrency=4, return_exceptions=True, stop=stop
            )
        )
        await until(lambda: server.in_flight == 4)
        stop.set()
        results = await send

    sent = [r for r in results if isinstance(r, NotificationCreateResponse)]
    unsent = [r for r in results if isinstance(r, BatchAbortedError)]
    assert len(results) == 40  # one per item: the rest of the input is accounted for
    assert len(sent) == server.request_count == len(server.notifications) == 4
    assert len(unsent) == 36
    assert all(r.__cause__ is None for r in unsent)


async def test_without_return_exceptions_a_stop_raises_with_every_outcome() -> None:
    async with server_and_client(response_delay=0.2) as (server, client):
        stop = asyncio.Event()
        send = asyncio.ensure_future(
            gather_notifications(client, items(10), concurrency=4, stop=stop)
        )
        await until(lambda: server.in_flight == 4)
        stop.set()
        with pytest.raises(BulkSendError, match="stopped") as caught:
            await send

    results = caught.value.results
    assert len(results) == 10
    assert sum(isinstance(r, NotificationCreateResponse) for r in results) == server.request_count
    assert sum(isinstance(r, BatchAbortedError) for r in results) == 10 - server.request_count
    assert caught.value.__cause__ is None  # nothing failed: it was stopped


async def test_a_stop_frees_items_waiting_for_the_rate_limiter_at_once() -> None:
    # Two a minute: eight items would wait minutes for the limiter. Stopped, they come back at
    # once as not sent, and nothing more reaches the server.
    async with server_and_client(rate_limit=RateLimit(2, per=60.0)) as (server, client):
        stop = asyncio.Event()
        send = asyncio.ensure_future(
            gather_notifications(
                client, items(10), concurrency=8, return_exceptions=True, stop=stop
            )
        )
        await until(lambda: server.request_count == 2)
        stop.set()
        results = await asyncio.wait_for(send, 5.0)

    assert server.request_count == 2
    assert sum(isinstance(r, BatchAbortedError) for r in results) == 8


async def test_a_stopped_stream_reads_no_more_of_an_endless_source() -> None:
    read = 0

    async def endless() -> AsyncIterator[dict[str, Any]]:
        nonlocal read
        while True:
            read += 1
            yield item(read)

    async with server_and_client(response_delay=0.1) as (server, client):
        stop = asyncio.Event()
        seen: list[BulkOutcome] = []
        async for outcome in iter_notifications(client, endless(), concurrency=3, stop=stop):
            seen.append(outcome)
            if len(seen) == 5:
                stop.set()

    assert read == len(seen)  # every item read has its outcome, and no more was read
    assert sum(outcome.ok for outcome in seen) == server.request_count
    assert all(o.ok or isinstance(o.error, BatchAbortedError) for o in seen)


# Cancellation that reports


async def test_cancelling_a_send_reports_every_item_in_flight_with_its_key() -> None:
    async with server_and_client(response_delay=0.5) as (server, client):
        reported: list[BulkOutcome] = []
        send = asyncio.ensure_future(
            gather_notifications(client, items(50), concurrency=4, on_result=reported.append)
        )
        await until(lambda: server.in_flight == 4)
        send.cancel()
        with pytest.raises(asyncio.CancelledError):
            await send

    assert len(reported) == 4
    assert all(isinstance(o.error, OutcomeUnknownError) for o in reported)
    assert all(is_retryable(o.error) for o in reported if o.error is not None)
    keys_on_the_wire = {r.headers["Idempotency-Key"] for r in server.requests}
    assert {o.idempotency_key for o in reported} == keys_on_the_wire
    assert {o.index for o in reported} == {0, 1, 2, 3}


async def test_an_item_cancelled_before_it_was_sent_is_reported_as_not_sent() -> None:
    async with server_and_client(rate_limit=RateLimit(1, per=60.0)) as (server, client):
        reported: list[BulkOutcome] = []
        send = asyncio.ensure_future(
            gather_notifications(client, items(3), concurrency=3, on_result=reported.append)
        )
        await until(lambda: len(reported) == 1)  # the one the limiter let through
        send.cancel()
        with pytest.raises(asyncio.CancelledError):
            await send

    assert server.request_count == 1
    waiting = [o for o in reported if not o.ok]
    assert len(waiting) == 2
    assert all(isinstance(o.error, BatchAbortedError) for o in waiting)
    assert all(o.idempotency_key is None for o in waiting)


# A fatal failure ends a stream


async def test_after_a_401_a_stream_yields_what_it_read_then_raises() -> None:
    read = 0

    async def endless() -> AsyncIterator[dict[str, Any]]:
        nonlocal read
        while True:
            read += 1
            yield item(read)

    async with WhopEmulator(rate_limit=None) as server:
        client = AsyncWhop("revoked", base_url=server.base_url, backoff=Backoff.instant())
        seen: list[BulkOutcome] = []

        async def consume() -> None:
            async for outcome in iter_notifications(client, endless(), concurrency=4):
                seen.append(outcome)

        async with client:
            with pytest.raises(AuthenticationError):
                await consume()

    assert read == len(seen) <= 8  # stopped reading at once; every item read is accounted for
    assert server.request_count <= 4
    assert sum(isinstance(o.error, AuthenticationError) for o in seen) == server.request_count


# Counters that match the wire (issue 16, finding 3)


async def test_counters_match_what_the_server_saw() -> None:
    async with server_and_client() as (server, client):
        server.fail_next(1, status=429, headers={"retry-after-ms": "1"})
        server.fail_next(1, status=503)
        stats = BulkStats()
        await gather_notifications(client, items(20), concurrency=1, stats=stats)

    assert stats.attempts == server.request_count == 22
    assert stats.rate_limited == server.status_counts[429] == 1
    assert stats.retries == 1  # the 503; the 429 was waited out without using a retry
    assert stats.succeeded == 20


async def test_a_429_that_uses_a_retry_is_counted_as_one() -> None:
    async with server_and_client() as (server, client):
        server.fail_next(1, status=429, headers={"retry-after-ms": "1"})
        stats = BulkStats()
        await gather_notifications(client, items(1), stats=stats, max_rate_limit_wait=0)

    # Finding 3: this used to count attempts=2, retries=0, rate_limited=1.
    assert (stats.attempts, stats.retries, stats.rate_limited) == (2, 1, 1)
    assert server.request_count == 2


async def test_replayed_items_are_counted_and_marked() -> None:
    async with server_and_client() as (server, client):
        keyed = [{**item(i), "idempotency_key": f"row-{i}"} for i in range(6)]
        await gather_notifications(client, keyed[:2])
        stats = BulkStats()
        outcomes = [o async for o in iter_notifications(client, keyed, stats=stats)]

    assert stats.replayed == 2
    assert sorted(o.index for o in outcomes if o.replayed) == [0, 1]
    assert len(server.notifications) == 6


def test_a_streams_bad_option_is_refused_when_it_is_called_not_when_first_read() -> None:
    client = AsyncWhop("sk_test")  # never opened: nothing can be sent
    with pytest.raises(InvalidParamsError) as caught:
        iter_notifications(client, items(3), concurrency=0)

    assert caught.value.field == "concurrency"
