"""Bulk sending against the emulator: bounds, order, exactly-once, failures, cancellation, 429s."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
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
    NotificationCreateParams,
    NotificationCreateResponse,
    PermissionDeniedError,
    RateLimit,
    RateLimitError,
    RateLimitWaitEvent,
    UnprocessableEntityError,
    WhopEvent,
    gather_notifications,
    iter_notifications,
)
from whop_async._ratelimit import MIN_RATE_LIMIT_PAUSE
from whop_async.testing import FakeClock, Fault, ScriptedResponse, WhopEmulator


def item(index: int, **extra: Any) -> dict[str, Any]:
    return {"company_id": "biz_bulk", "title": f"t{index}", "content": "hello", **extra}


def items(count: int) -> Iterator[dict[str, Any]]:
    return (item(index) for index in range(count))


@contextlib.asynccontextmanager
async def emulator_and_client(
    client_options: dict[str, Any] | None = None, **emulator_options: Any
) -> AsyncIterator[tuple[WhopEmulator, AsyncWhop]]:
    """An emulator and a client that both allow far more than these tests send, unless told."""
    emulator_options.setdefault("rate_limit", None)
    limit = RateLimit(10_000, per=1.0)
    options: dict[str, Any] = {"backoff": Backoff.instant(), "rate_limit": limit}
    options.update(client_options or {})
    async with (
        WhopEmulator(**emulator_options) as server,
        AsyncWhop(server.api_key, base_url=server.base_url, **options) as client,
    ):
        yield server, client


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds, failing after ``timeout`` seconds instead of hanging."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def leftover_client_tasks() -> list[asyncio.Task[Any]]:
    """Pending tasks running whop_async client code (the emulator's own tasks do not count)."""
    leftovers = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        filename = code.co_filename if code is not None else ""
        if not task.done() and "whop_async" in filename and "testing" not in filename:
            leftovers.append(task)
    return leftovers


def titles(server: WhopEmulator) -> list[str]:
    return [notification.body["title"] for notification in server.notifications]


async def test_in_flight_reaches_but_never_exceeds_concurrency() -> None:
    async with emulator_and_client(response_delay=0.05) as (server, client):
        results = await gather_notifications(client, items(40), concurrency=8)

    assert len(results) == 40
    assert server.peak_in_flight == 8


async def test_results_are_in_input_order_with_failures_at_their_index(
    whop_emulator: WhopEmulator, whop_client: AsyncWhop
) -> None:
    batch: list[Any] = [item(index) for index in range(12)]
    batch[3] = item(3, title="")
    batch[7] = {"title": "no audience", "content": "x"}

    results = await gather_notifications(whop_client, batch, concurrency=4, return_exceptions=True)

    assert [type(result).__name__ for result in results] == [
        "InvalidParamsError" if index in (3, 7) else "NotificationCreateResponse"
        for index in range(12)
    ]
    assert isinstance(results[3], InvalidParamsError)
    assert results[3].field == "title"
    assert sorted(titles(whop_emulator), key=lambda t: int(t[1:])) == [
        f"t{index}" for index in range(12) if index not in (3, 7)
    ]


async def test_a_lazy_generator_is_not_read_ahead_of_sending(whop_client: AsyncWhop) -> None:
    pulled = 0
    lead: list[int] = []

    def generate() -> Iterator[dict[str, Any]]:
        nonlocal pulled
        for index in range(200):
            pulled += 1
            yield item(index)

    def watch(outcome: BulkOutcome) -> None:
        lead.append(pulled - (len(lead) + 1))

    await gather_notifications(whop_client, generate(), concurrency=5, on_result=watch)

    assert len(lead) == 200
    assert max(lead) <= 5


async def test_every_item_is_delivered_exactly_once_through_faults() -> None:
    async with emulator_and_client() as (server, client):
        server.script(
            ScriptedResponse(status=500, body={"error": {"message": "boom"}}),
            ScriptedResponse(fault=Fault.DROP),
            ScriptedResponse(fault=Fault.ACCEPT_THEN_DROP),
            ScriptedResponse(status=503, body="<html>unavailable</html>", content_type="text/html"),
            ScriptedResponse(fault=Fault.ACCEPT_THEN_DROP),
        )
        stats = BulkStats()
        results = await gather_notifications(client, items(100), concurrency=10, stats=stats)

    assert all(isinstance(result, NotificationCreateResponse) for result in results)
    assert sorted(titles(server)) == sorted(f"t{index}" for index in range(100))
    keys = server.idempotency_keys()
    assert len(set(keys)) == len(keys) == 100
    assert stats.succeeded == 100
    assert stats.retries == 5


async def test_caller_idempotency_keys_are_sent_for_every_attempt() -> None:
    async with emulator_and_client() as (server, client):
        server.fail_next(3, status=500)
        batch = [
            NotificationCreateParams(
                company_id="biz_bulk", title=f"t{i}", content="c", idempotency_key=f"order-{i}"
            )
            for i in range(10)
        ]
        await gather_notifications(client, batch, concurrency=3)

    assert sorted(server.idempotency_keys()) == sorted(f"order-{i}" for i in range(10))
    for request in server.requests:
        title = request.body.decode().split('"title":"')[1].split('"')[0]
        assert request.headers["Idempotency-Key"] == f"order-{title[1:]}"


async def test_return_exceptions_sends_the_rest_after_item_failures() -> None:
    async with emulator_and_client() as (server, client):
        server.fail_next(2, status=422)
        results = await gather_notifications(
            client, items(20), concurrency=1, return_exceptions=True
        )

    assert [type(result) for result in results[:2]] == [UnprocessableEntityError] * 2
    assert all(isinstance(result, NotificationCreateResponse) for result in results[2:])
    assert len(server.notifications) == 18


async def test_first_failure_stops_new_items_and_raises_with_every_outcome() -> None:
    async with emulator_and_client(response_delay=0.02) as (server, client):
        server.fail_next(1, status=404)
        with pytest.raises(BulkSendError) as caught:
            await gather_notifications(client, items(50), concurrency=4)

    error = caught.value
    assert len(error.results) == 50
    sent = [r for r in error.results if isinstance(r, NotificationCreateResponse)]
    aborted = [r for r in error.results if isinstance(r, BatchAbortedError)]
    assert type(error.__cause__).__name__ == "NotFoundError"
    assert len(sent) == len(server.notifications) <= 3
    assert len(sent) + len(aborted) + 1 == 50
    assert all(isinstance(a.__cause__, type(error.__cause__)) for a in aborted)
    assert server.request_count == len(sent) + 1


async def test_a_401_stops_the_batch_at_once_in_both_modes() -> None:
    for return_exceptions in (False, True):
        async with (
            WhopEmulator() as server,
            AsyncWhop("revoked-key", base_url=server.base_url) as client,
        ):
            outcome: list[Any]
            if return_exceptions:
                outcome = await gather_notifications(
                    client, items(100), concurrency=4, return_exceptions=True
                )
            else:
                with pytest.raises(BulkSendError) as caught:
                    await gather_notifications(client, items(100), concurrency=4)
                outcome = caught.value.results
                assert isinstance(caught.value.__cause__, AuthenticationError)

        assert server.request_count <= 4
        assert len(outcome) == 100
        assert sum(isinstance(r, AuthenticationError) for r in outcome) == server.request_count
        aborted = [r for r in outcome if isinstance(r, BatchAbortedError)]
        assert len(aborted) == 100 - server.request_count
        assert all(isinstance(a.__cause__, AuthenticationError) for a in aborted)


async def test_a_403_fails_its_audience_and_the_other_audiences_go_on() -> None:
    # Whop answers 403 for an experience the key cannot reach: the rest of that experience's
    # items fail with the same error, without a request; other experiences are sent.
    def audience_item(index: int) -> dict[str, Any]:
        audience = "exp_locked" if index % 2 == 0 else "exp_open"
        return {"experience_id": audience, "title": f"t{index}", "content": "hello"}

    async with emulator_and_client() as (server, client):
        server.fail_next(1, status=403)
        stream = iter_notifications(client, (audience_item(i) for i in range(30)), concurrency=1)
        seen = {outcome.index: outcome async for outcome in stream}

    assert sorted(seen) == list(range(30))
    locked = [seen[index] for index in range(0, 30, 2)]
    assert all(isinstance(outcome.error, PermissionDeniedError) for outcome in locked)
    assert {id(outcome.error) for outcome in locked} == {id(locked[0].error)}
    assert locked[0].idempotency_key is not None
    assert all(outcome.idempotency_key is None for outcome in locked[1:])  # never sent
    assert all(seen[index].ok for index in range(1, 30, 2))
    assert server.request_count == 1 + 15
    assert {n.body["experience_id"] for n in server.notifications} == {"exp_open"}


async def test_cancelling_a_bulk_send_stops_everything_and_the_client_stays_usable() -> None:
    async with emulator_and_client({"connection_limit": 10}) as (server, client):
        server.script(*[ScriptedResponse(fault=Fault.HANG)] * 10)
        task = asyncio.ensure_future(gather_notifications(client, items(100), concurrency=10))
        await until(lambda: server.in_flight == 10)
        assert len(leftover_client_tasks()) == 11  # the batch and its ten workers
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert leftover_client_tasks() == []
        assert server.request_count == 10
        # Every connection went back to the pool or was closed: ten new calls find ten free
        # at once (the ten hung requests are still at the server beside them).
        server.response_delay = 0.1
        again = gather_notifications(client, items(10), concurrency=10)
        assert len(await asyncio.wait_for(again, 5.0)) == 10
        assert server.peak_in_flight == 20


async def test_a_client_that_overestimates_the_limit_learns_it_and_loses_nothing() -> None:
    # The client believes it may send 1,000 in 10 s; this server allows 40 a second (a smaller
    # window): after the first burst the client must pace itself instead of hammering.
    count = 160
    async with (
        WhopEmulator(rate_limit=RateLimit(40, per=1.0), rate_limit_window="sliding") as server,
        AsyncWhop(
            server.api_key, base_url=server.base_url, rate_limit=RateLimit(1000, per=10.0)
        ) as client,
    ):
        stats = BulkStats()
        results = await gather_notifications(client, items(count), concurrency=16, stats=stats)

    assert all(isinstance(result, NotificationCreateResponse) for result in results)
    assert sorted(titles(server)) == sorted(f"t{index}" for index in range(count))
    assert len(set(server.idempotency_keys())) == count
    assert server.status_counts.get(429, 0) == stats.rate_limited > 0
    assert stats.rate_limited / server.request_count < 0.15  # the first burst's, and few more
    assert stats.retries == 0  # 429s did not use any item's retry budget
    assert stats.send_rate is not None
    assert 20 < stats.send_rate <= 45


async def test_a_429_does_not_use_the_items_retry_budget() -> None:
    async with (
        WhopEmulator() as server,
        AsyncWhop(
            server.api_key,
            base_url=server.base_url,
            max_retries=0,
            backoff=Backoff.instant(),
            rate_limit=None,
        ) as client,
    ):
        server.fail_next(3, status=429, headers={"Retry-After": "0"})
        results = await gather_notifications(client, items(1))

    assert isinstance(results[0], NotificationCreateResponse)
    assert server.request_count == 4


async def test_each_items_rate_limit_wait_is_bounded() -> None:
    clock = FakeClock(auto_advance=True)
    async with emulator_and_client({"clock": clock}) as (server, client):
        server.fail_next(50, status=429)
        client_no_retry = client.with_options(max_retries=0)
        stats = BulkStats()
        results = await gather_notifications(
            client_no_retry,
            items(1),
            return_exceptions=True,
            max_rate_limit_wait=0.2,
            stats=stats,
        )

    assert isinstance(results[0], RateLimitError)
    # Four waits of the minimum pause fit in 0.2 s; the fifth 429 uses the (absent) retry.
    assert server.request_count == 5
    assert clock.slept == [MIN_RATE_LIMIT_PAUSE] * 4
    assert stats.rate_limit_wait == pytest.approx(5 * MIN_RATE_LIMIT_PAUSE)


async def test_max_rate_paces_the_whole_batch(whop_emulator: WhopEmulator) -> None:
    clock = FakeClock(auto_advance=True)
    async with AsyncWhop(
        whop_emulator.api_key, base_url=whop_emulator.base_url, rate_limit=None, clock=clock
    ) as client:
        await gather_notifications(client, items(41), concurrency=8, max_rate=100)

    # Eight workers, one pace: each start after the first waited its interval of 1/100 s, so
    # the 41st started 40 intervals after the first.
    assert clock.slept == pytest.approx([1 / 100] * 40)
    assert clock.now() == pytest.approx(40 / 100)
    assert whop_emulator.request_count == 41


async def test_async_iterables_and_params_objects_are_accepted(
    whop_emulator: WhopEmulator, whop_client: AsyncWhop
) -> None:
    async def generate() -> AsyncIterator[NotificationCreateParams]:
        for index in range(25):
            await asyncio.sleep(0)
            yield NotificationCreateParams(experience_id="exp_1", title=f"t{index}", content="c")

    results = await gather_notifications(whop_client, generate(), concurrency=6)

    assert len(results) == 25
    assert sorted(titles(whop_emulator), key=lambda t: int(t[1:])) == [f"t{i}" for i in range(25)]


async def test_iter_notifications_yields_each_outcome_once(
    whop_emulator: WhopEmulator, whop_client: AsyncWhop
) -> None:
    whop_emulator.fail_next(1, status=400)
    outcomes = [o async for o in iter_notifications(whop_client, items(40), concurrency=4)]

    assert sorted(o.index for o in outcomes) == list(range(40))
    assert sum(not o.ok for o in outcomes) == 1
    assert {o.idempotency_key for o in outcomes if o.ok} == set(whop_emulator.idempotency_keys())


async def test_leaving_the_stream_early_cancels_the_requests_in_flight() -> None:
    async with emulator_and_client(response_delay=0.05) as (server, client):
        stream = iter_notifications(client, items(1000), concurrency=8)
        async with contextlib.aclosing(stream):
            async for outcome in stream:
                if outcome.index >= 10:
                    break

        assert leftover_client_tasks() == []
        assert server.request_count < 40


async def test_on_result_may_be_async_and_sees_every_outcome(whop_client: AsyncWhop) -> None:
    seen: list[int] = []

    async def record(outcome: BulkOutcome) -> None:
        await asyncio.sleep(0)
        seen.append(outcome.index)

    await gather_notifications(whop_client, items(15), concurrency=3, on_result=record)

    assert sorted(seen) == list(range(15))


async def test_an_error_in_on_result_stops_the_batch_and_propagates(
    whop_emulator: WhopEmulator, whop_client: AsyncWhop
) -> None:
    def explode(outcome: BulkOutcome) -> None:
        raise RuntimeError("journal disk full")

    with pytest.raises(RuntimeError, match="journal disk full"):
        await gather_notifications(whop_client, items(50), concurrency=4, on_result=explode)

    assert whop_emulator.request_count <= 4
    assert leftover_client_tasks() == []


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": True}, "concurrency"),
        ({"max_rate": 0}, "max_rate"),
        ({"max_rate_limit_wait": -1}, "max_rate_limit_wait"),
    ],
)
async def test_bad_options_are_rejected_before_any_request(
    whop_emulator: WhopEmulator, whop_client: AsyncWhop, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidParamsError) as caught:
        await gather_notifications(whop_client, items(3), **options)

    assert caught.value.field == field
    assert whop_emulator.request_count == 0


async def test_items_must_be_iterable_and_each_item_a_mapping_or_params(
    whop_emulator: WhopEmulator, whop_client: AsyncWhop
) -> None:
    with pytest.raises(InvalidParamsError, match="items"):
        await gather_notifications(whop_client, "not a list of items")  # type: ignore[arg-type]

    results = await gather_notifications(
        whop_client,
        [42, {"company_id": "biz_1", "title": "t", "content": "c", "colour": "red"}],  # type: ignore[list-item]
        return_exceptions=True,
    )

    assert [getattr(r, "field", None) for r in results] == ["item", "colour"]
    assert whop_emulator.request_count == 0


async def test_an_early_429_does_not_slow_the_rest_of_the_batch() -> None:
    # One 429 after ten quick successes: the pace it sets must reflect ten successes in a few
    # milliseconds, not ten in a whole second.
    events: list[WhopEvent] = []
    async with emulator_and_client({"on_event": events.append}) as (server, client):
        server.script(
            *[ScriptedResponse() for _ in range(10)],
            ScriptedResponse(status=429, body={}, headers={"Retry-After": "0"}),
        )
        stats = BulkStats()
        send = gather_notifications(client, items(300), concurrency=4, stats=stats)
        await asyncio.wait_for(send, timeout=30)  # ten per second would take 30 s

    assert stats.rate_limited == 1
    assert stats.send_rate is None or stats.send_rate > 100  # not the ~9/s of ten per second
    # Held back only by the 429's own pause, never by a pace the limiter took from it.
    waits = {event.kind for event in events if isinstance(event, RateLimitWaitEvent)}
    assert waits <= {"pause"}


async def test_stray_429s_pause_the_batch_and_cost_no_item() -> None:
    async with emulator_and_client() as (server, client):
        every_twentieth = [
            ScriptedResponse(status=429, body={}, headers={"retry-after-ms": "1"})
            if index % 20 == 19
            else ScriptedResponse()
            for index in range(400)
        ]
        server.script(*every_twentieth)
        stats = BulkStats()
        await gather_notifications(client, items(380), concurrency=4, stats=stats)

    assert stats.rate_limited == 19  # the 400th scripted answer is never needed
    assert stats.succeeded == 380
    assert stats.retries == 0
