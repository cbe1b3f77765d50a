"""AsyncWhop(on_event=...): typed events for every attempt, retry and rate-limit wait."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from whop_async import (
    APIConnectionError,
    AsyncWhop,
    AttemptEvent,
    Backoff,
    InvalidParamsError,
    RateLimit,
    RateLimitWaitEvent,
    RetryEvent,
    WhopEvent,
)
from whop_async._events import key_hash
from whop_async.testing import FakeClock, Fault, ScriptedResponse, WhopEmulator

MakeClient = Callable[..., AsyncWhop]
SEND: dict[str, Any] = {"account_id": "biz_1", "title": "Hi", "content": "Hello"}


def of_type(events: list[WhopEvent], kind: type[Any]) -> list[Any]:
    return [event for event in events if isinstance(event, kind)]


async def test_a_success_is_one_attempt_event_that_names_the_call_by_a_hash(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    events: list[WhopEvent] = []
    client = make_client(on_event=events.append)

    response = await client.notifications.create(**SEND, idempotency_key="order-1")

    (event,) = events
    assert isinstance(event, AttemptEvent)
    assert (event.operation, event.method, event.attempt) == ("notifications.create", "POST", 1)
    assert (event.status, event.error, event.replayed) == (200, None, False)
    assert event.url == f"{whop_emulator.base_url}/notifications"
    assert event.request_id == response.request_id
    assert event.key_hash == key_hash("order-1") != "order-1"
    assert event.elapsed >= 0


async def test_a_retried_failure_is_an_attempt_a_retry_and_an_attempt(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    events: list[WhopEvent] = []
    client = make_client(on_event=events.append, max_retries=2)
    whop_emulator.fail_next(1, status=503)
    whop_emulator.script(ScriptedResponse(fault=Fault.DROP))

    await client.notifications.create(**SEND)

    assert [type(event).__name__ for event in events] == [
        "AttemptEvent", "RetryEvent", "AttemptEvent", "RetryEvent", "AttemptEvent",
    ]  # fmt: skip
    first, dropped, last = of_type(events, AttemptEvent)
    assert (first.status, first.error) == (503, "InternalServerError")
    assert (dropped.status, dropped.error) == (None, "APIConnectionError")
    assert (last.attempt, last.status) == (3, 200)
    retries = of_type(events, RetryEvent)
    assert [(r.attempt, r.reason, r.uses_retry) for r in retries] == [
        (1, "status 503", True),
        (2, "APIConnectionError", True),
    ]
    assert len({event.key_hash for event in events}) == 1


async def test_a_429_waited_out_is_a_retry_that_uses_no_retry(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    events: list[WhopEvent] = []
    client = make_client(on_event=events.append, max_retries=0)
    whop_emulator.fail_next(1, status=429, headers={"retry-after-ms": "20"})

    await client.notifications.create(**SEND)

    (retry,) = of_type(events, RetryEvent)
    assert (retry.reason, retry.uses_retry, retry.delay) == ("rate limited (429)", False, 0.05)


async def test_a_wait_for_the_rate_limiter_is_an_event_with_its_kind(
    whop_emulator: WhopEmulator,
) -> None:
    events: list[WhopEvent] = []
    clock = FakeClock(auto_advance=True)
    async with AsyncWhop(
        whop_emulator.api_key,
        base_url=whop_emulator.base_url,
        rate_limit=RateLimit(1, per=10.0),
        clock=clock,
        on_event=events.append,
    ) as client:
        await client.notifications.create(**SEND)
        await client.notifications.create(**SEND)  # waits a window, on the fake clock

    (wait,) = of_type(events, RateLimitWaitEvent)
    assert (wait.kind, wait.attempt) == ("local", 1)
    assert wait.seconds == pytest.approx(10.05)


async def test_no_event_holds_the_key_or_the_api_key(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    events: list[WhopEvent] = []
    client = make_client(on_event=events.append, max_retries=1)
    whop_emulator.fail_next(1, status=500)

    await client.notifications.create(**SEND, idempotency_key="secret-order-key")

    for event in events:
        text = repr(event)
        assert "secret-order-key" not in text
        assert str(whop_emulator.api_key) not in text


async def test_a_callback_that_raises_is_logged_and_changes_nothing(
    make_client: MakeClient, whop_logs: list[logging.LogRecord]
) -> None:
    def broken(event: WhopEvent) -> None:
        raise RuntimeError("dashboard down")

    response = await make_client(on_event=broken).notifications.create(**SEND)

    assert response.success
    assert any("on_event callback raised" in record.getMessage() for record in whop_logs)


async def test_a_refused_connection_is_an_attempt_event_too(
    whop_emulator: WhopEmulator,
) -> None:
    events: list[WhopEvent] = []
    await whop_emulator.stop()  # nothing listens there any more
    async with AsyncWhop(
        "sk_test",
        base_url=whop_emulator.base_url,
        max_retries=0,
        backoff=Backoff.instant(),
        on_event=events.append,
    ) as client:
        with pytest.raises(APIConnectionError):
            await client.notifications.create(**SEND)

    (event,) = events
    assert (event.status, event.error) == (None, "APIConnectionError")


def test_on_event_must_be_callable() -> None:
    with pytest.raises(InvalidParamsError) as caught:
        AsyncWhop("sk_test", on_event="print")  # type: ignore[arg-type]
    assert caught.value.field == "on_event"


async def test_with_options_copies_report_to_the_same_callback(
    make_client: MakeClient,
) -> None:
    events: list[WhopEvent] = []
    client = make_client(on_event=events.append)

    await client.with_options(timeout=30.0).notifications.create(**SEND)

    assert len(of_type(events, AttemptEvent)) == 1
