"""One POST on the wire: retries, server hints, timeouts, logging, and the limiter every attempt
passes. Cancellation, TLS and the other stories under faults are in test_faults.py."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

import pytest
import trustme

from whop_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncWhop,
    AttemptEvent,
    Backoff,
    ConflictError,
    InternalServerError,
    Permit,
    RateLimit,
    RateLimiter,
    RateLimitError,
    WhopEvent,
    is_retryable,
)
from whop_async.testing import FakeClock, Fault, ScriptedResponse, WhopEmulator

MakeClient = Callable[..., AsyncWhop]
SEND: dict[str, Any] = {"company_id": "biz_1", "title": "Hi", "content": "Hello"}


def messages(records: list[logging.LogRecord], level: int) -> list[str]:
    return [record.getMessage() for record in records if record.levelno == level]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (408, APIStatusError),
        (409, ConflictError),
        (429, RateLimitError),
        (500, InternalServerError),
        (502, InternalServerError),
        (503, InternalServerError),
    ],
)
async def test_a_retryable_status_is_tried_max_retries_more_times(
    make_client: MakeClient, whop_emulator: WhopEmulator, status: int, error: type[Exception]
) -> None:
    client = make_client(max_retries=2, max_rate_limit_wait=0)  # a 429 uses retries like others
    whop_emulator.fail_next(5, status=status)

    with pytest.raises(error):
        await client.notifications.create(**SEND)

    assert whop_emulator.request_count == 3
    assert whop_emulator.notifications == []


async def test_max_retries_zero_means_one_attempt(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(max_retries=0)
    whop_emulator.fail_next(1, status=503)

    with pytest.raises(InternalServerError):
        await client.notifications.create(**SEND)

    assert whop_emulator.request_count == 1


async def test_a_transient_failure_is_retried_into_a_success(
    whop_client: AsyncWhop, whop_emulator: WhopEmulator
) -> None:
    whop_emulator.fail_next(2, status=500)

    response = await whop_client.notifications.create(**SEND)

    assert response.success is True
    assert whop_emulator.request_count == 3
    assert len(whop_emulator.notifications) == 1


async def test_the_server_can_forbid_a_retry(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(max_retries=3)
    whop_emulator.fail_next(1, status=503, headers={"x-should-retry": "false"})

    with pytest.raises(InternalServerError):
        await client.notifications.create(**SEND)

    assert whop_emulator.request_count == 1


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (400, {}),
        (400, {"x-should-retry": "true"}),
        (404, {}),
        (408, {}),
        (409, {}),
        (422, {}),
        (429, {"retry-after-ms": "1"}),
        (500, {}),
        (503, {"x-should-retry": "false"}),
    ],
)
async def test_is_retryable_says_what_the_client_did(
    make_client: MakeClient, whop_emulator: WhopEmulator, status: int, headers: dict[str, str]
) -> None:
    # max_rate_limit_wait=0: a 429 uses up a retry, like any other retried answer.
    client = make_client(max_retries=1, backoff=Backoff.instant(), max_rate_limit_wait=0)
    whop_emulator.fail_next(2, status=status, headers=headers)

    with pytest.raises(APIStatusError) as caught:
        await client.notifications.create(**SEND)

    assert caught.value.status_code == status
    assert is_retryable(caught.value) is (whop_emulator.request_count == 2)


@pytest.mark.parametrize("fault", [Fault.DROP, Fault.HANG], ids=["reset", "timeout"])
async def test_is_retryable_says_the_client_retried_a_connection_failure(
    make_client: MakeClient, whop_emulator: WhopEmulator, fault: Fault
) -> None:
    client = make_client(max_retries=1, backoff=Backoff.instant(), timeout=0.2)
    whop_emulator.script(*[ScriptedResponse(fault=fault)] * 2)

    with pytest.raises(APIConnectionError) as caught:
        await client.notifications.create(**SEND)

    assert whop_emulator.request_count == 2
    assert is_retryable(caught.value)


async def test_the_server_can_ask_for_a_retry_of_a_client_error(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(max_retries=2)
    whop_emulator.fail_next(1, status=400, headers={"x-should-retry": "true"})

    response = await client.notifications.create(**SEND)

    assert response.success is True
    assert whop_emulator.request_count == 2


@pytest.mark.parametrize(
    "headers",
    [{"retry-after-ms": "250"}, {"Retry-After": "0.25"}],
    ids=["retry-after-ms", "retry-after-seconds"],
)
async def test_the_wait_the_server_asks_for_is_honoured(
    make_client: MakeClient, whop_emulator: WhopEmulator, headers: dict[str, str]
) -> None:
    clock = FakeClock(auto_advance=True)
    client = make_client(backoff=Backoff(initial=0.0, maximum=0.0, jitter=0.0), clock=clock)
    whop_emulator.fail_next(1, status=429, headers=headers)

    await client.notifications.create(**SEND)

    assert clock.slept == [0.25]
    assert whop_emulator.status_counts == {429: 1, 200: 1}


async def test_an_http_date_retry_after_is_honoured_up_to_the_cap(
    make_client: MakeClient, whop_emulator: WhopEmulator, whop_logs: list[logging.LogRecord]
) -> None:
    clock = FakeClock(auto_advance=True)
    client = make_client(
        backoff=Backoff(initial=0.0, maximum=0.0, max_retry_after=0.2), clock=clock
    )
    in_an_hour = email.utils.formatdate(time.time() + 3600, usegmt=True)
    whop_emulator.fail_next(1, status=503, headers={"Retry-After": in_an_hour})

    await client.notifications.create(**SEND)

    assert clock.slept == [0.2]
    assert whop_emulator.status_counts == {503: 1, 200: 1}
    (retry,) = messages(whop_logs, logging.INFO)
    assert "in 0.200 s" in retry


async def test_without_a_hint_the_wait_doubles(
    make_client: MakeClient, whop_emulator: WhopEmulator, whop_logs: list[logging.LogRecord]
) -> None:
    clock = FakeClock(auto_advance=True)
    backoff = Backoff(initial=0.04, maximum=0.08, jitter=0.0)
    client = make_client(max_retries=3, backoff=backoff, clock=clock)
    whop_emulator.fail_next(3, status=500)

    await client.notifications.create(**SEND)

    assert clock.slept == [0.04, 0.08, 0.08]  # doubled, then capped at the maximum
    retries = messages(whop_logs, logging.INFO)
    waits = [message.split(" in ")[1].split(" s ")[0] for message in retries]
    assert waits == ["0.040", "0.080", "0.080"]
    assert whop_emulator.status_counts == {500: 3, 200: 1}


async def test_a_dropped_connection_is_retried(
    whop_client: AsyncWhop, whop_emulator: WhopEmulator
) -> None:
    whop_emulator.script(ScriptedResponse(fault=Fault.DROP), ScriptedResponse(fault=Fault.DROP))

    response = await whop_client.notifications.create(**SEND)

    assert response.success is True
    assert whop_emulator.request_count == 3
    assert len(whop_emulator.notifications) == 1


async def test_connections_dropping_every_time_end_in_a_connection_error(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(max_retries=1)
    whop_emulator.script(*[ScriptedResponse(fault=Fault.DROP)] * 2)

    with pytest.raises(APIConnectionError, match="Connection error") as caught:
        await client.notifications.create(**SEND)

    assert not isinstance(caught.value, APITimeoutError)
    assert caught.value.__cause__ is not None
    assert whop_emulator.request_count == 2


async def test_a_body_cut_short_is_a_connection_error_and_retried(
    whop_client: AsyncWhop, whop_emulator: WhopEmulator
) -> None:
    whop_emulator.script(
        ScriptedResponse(body={"success": True, "pad": "x" * 100}, fault=Fault.TRUNCATE)
    )

    response = await whop_client.notifications.create(**SEND)

    assert response.success is True
    assert whop_emulator.request_count == 2


async def test_a_hanging_server_ends_in_a_timeout_error_not_a_hang(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    events: list[WhopEvent] = []
    client = make_client(timeout=0.2, max_retries=1, on_event=events.append)
    whop_emulator.script(*[ScriptedResponse(fault=Fault.HANG)] * 2)

    with pytest.raises(APITimeoutError, match="timed out"):
        await asyncio.wait_for(client.notifications.create(**SEND), timeout=5)

    # Each attempt gave up on its own while the server still held it: two, both timed out.
    assert whop_emulator.request_count == whop_emulator.in_flight == 2
    attempts = [event for event in events if isinstance(event, AttemptEvent)]
    assert [(event.status, event.error) for event in attempts] == [(None, "APITimeoutError")] * 2


async def test_a_slow_answer_times_out_and_the_retry_succeeds(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(timeout=0.2, max_retries=1)
    whop_emulator.script(ScriptedResponse(delay=1.0))

    response = await client.notifications.create(**SEND)

    assert response.success is True
    assert whop_emulator.request_count == 2


async def test_each_attempt_is_logged_at_debug_and_each_retry_at_info(
    whop_client: AsyncWhop, whop_emulator: WhopEmulator, whop_logs: list[logging.LogRecord]
) -> None:
    whop_emulator.fail_next(1, status=502, headers={"X-Request-Id": "req_first"})

    await whop_client.notifications.create(**SEND)

    url = f"{whop_emulator.base_url}/notifications"
    first, second = messages(whop_logs, logging.DEBUG)
    assert first.startswith(f"POST {url} -> 502 (attempt 1 of 3, ")
    assert first.endswith(" ms, request id req_first)")
    assert second.startswith(f"POST {url} -> 200 (attempt 2 of 3, ")
    assert "request id req_" in second
    (retry,) = messages(whop_logs, logging.INFO)
    assert retry == f"Retrying POST {url} in 0.000 s (retry 1 of 2) after status 502"
    assert all(record.name == "whop_async" for record in whop_logs)


async def test_a_connection_failure_is_logged_with_its_reason(
    whop_client: AsyncWhop, whop_emulator: WhopEmulator, whop_logs: list[logging.LogRecord]
) -> None:
    whop_emulator.script(ScriptedResponse(fault=Fault.DROP))

    await whop_client.notifications.create(**SEND)

    attempt = messages(whop_logs, logging.DEBUG)[0]
    assert "-> ServerDisconnectedError (attempt 1 of 3" in attempt
    assert "request id None" in attempt
    (retry,) = messages(whop_logs, logging.INFO)
    assert "after Connection error: ServerDisconnectedError" in retry


async def test_no_log_record_ever_holds_the_key_or_the_authorization_header(
    make_client: MakeClient, whop_emulator: WhopEmulator, whop_logs: list[logging.LogRecord]
) -> None:
    client = make_client(max_retries=2)
    whop_emulator.script(
        ScriptedResponse(status=500, body={"error": {"message": whop_emulator.api_key}}),
        ScriptedResponse(fault=Fault.DROP),
    )

    await client.notifications.create(**SEND)

    text = "\n".join(record.getMessage() for record in whop_logs)
    assert len(whop_logs) == 5
    assert "Bearer" not in text
    assert str(whop_emulator.api_key) not in text


async def test_no_debug_work_when_debug_logging_is_off(
    whop_client: AsyncWhop, whop_emulator: WhopEmulator, whop_logs: list[logging.LogRecord]
) -> None:
    logging.getLogger("whop_async").setLevel(logging.INFO)

    await whop_client.notifications.create(**SEND)

    assert whop_logs == []


class RecordingLimiter(RateLimiter):
    """A limiter of the caller's: records every attempt that passes through it."""

    def __init__(self) -> None:
        self.events: list[object] = []

    @property
    def limit(self) -> RateLimit | None:
        return None

    async def acquire(self, operation: str) -> Permit:
        self.events.append(("acquire", operation))
        return Permit()

    async def release(self, operation: str, permit: Permit) -> None:
        self.events.append((permit.status, permit.retry_after))


async def test_every_attempt_passes_through_the_limiter_and_429s_use_no_retry(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    limiter = RecordingLimiter()
    client = make_client(rate_limit=limiter, max_retries=1)
    whop_emulator.fail_next(2, status=429, headers={"Retry-After": "0"})
    whop_emulator.script(ScriptedResponse(fault=Fault.DROP))

    response = await client.notifications.create(**SEND)

    assert response.success is True
    attempt = ("acquire", "POST /notifications")
    assert limiter.events == [
        attempt,
        (429, None),  # Retry-After: 0 is no usable hint: the 429 asked for no wait
        attempt,
        (429, None),
        attempt,
        (None, None),
        attempt,
        (200, None),
    ]
    assert whop_emulator.request_count == 4
    assert client.rate_limiter is limiter
    assert client.rate_limit is None


async def test_the_limiter_learns_of_a_tls_failure(certificate_authority: trustme.CA) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1").configure_cert(server_context)
    limiter = RecordingLimiter()

    async with WhopEmulator(ssl_context=server_context) as server:
        client = AsyncWhop(server.api_key, base_url=server.base_url, rate_limit=limiter)
        async with client:
            with pytest.raises(APIConnectionError, match="TLS"):
                await client.notifications.create(**SEND)

    assert limiter.events == [("acquire", "POST /notifications"), (None, None)]
