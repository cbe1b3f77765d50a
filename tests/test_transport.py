"""One POST on the wire: retries, server hints, timeouts, cancellation, TLS and logging."""

from __future__ import annotations

import asyncio
import email.utils
import itertools
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
    AuthenticationError,
    Backoff,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    Permit,
    RateLimit,
    RateLimiter,
    RateLimitError,
    UnprocessableEntityError,
    is_retryable,
)
from whop_async.testing import Fault, ScriptedResponse, WhopEmulator

MakeClient = Callable[..., AsyncWhop]
SEND: dict[str, Any] = {"company_id": "biz_1", "title": "Hi", "content": "Hello"}


def gaps(emulator: WhopEmulator) -> list[float]:
    """Seconds between consecutive requests the emulator received."""
    times = [request.received_at for request in emulator.requests]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def messages(records: list[logging.LogRecord], level: int) -> list[str]:
    return [record.getMessage() for record in records if record.levelno == level]


async def wait_for_request(emulator: WhopEmulator) -> None:
    while emulator.in_flight == 0:
        await asyncio.sleep(0.005)


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


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (418, APIStatusError),
        (422, UnprocessableEntityError),
    ],
)
async def test_other_client_errors_are_never_retried(
    make_client: MakeClient, whop_emulator: WhopEmulator, status: int, error: type[Exception]
) -> None:
    client = make_client(max_retries=5)
    whop_emulator.fail_next(1, status=status)

    with pytest.raises(error):
        await client.notifications.create(**SEND)

    assert whop_emulator.request_count == 1


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
    client = make_client(backoff=Backoff(initial=0.0, maximum=0.0, jitter=0.0))
    whop_emulator.fail_next(1, status=429, headers=headers)

    await client.notifications.create(**SEND)

    (gap,) = gaps(whop_emulator)
    assert 0.24 <= gap < 1.0


async def test_an_http_date_retry_after_is_honoured_up_to_the_cap(
    make_client: MakeClient, whop_emulator: WhopEmulator, whop_logs: list[logging.LogRecord]
) -> None:
    client = make_client(backoff=Backoff(initial=0.0, maximum=0.0, max_retry_after=0.2))
    in_an_hour = email.utils.formatdate(time.time() + 3600, usegmt=True)
    whop_emulator.fail_next(1, status=503, headers={"Retry-After": in_an_hour})

    await client.notifications.create(**SEND)

    (gap,) = gaps(whop_emulator)
    assert 0.19 <= gap < 1.0
    (retry,) = messages(whop_logs, logging.INFO)
    assert "in 0.200 s" in retry


async def test_without_a_hint_the_wait_doubles(
    make_client: MakeClient, whop_emulator: WhopEmulator, whop_logs: list[logging.LogRecord]
) -> None:
    client = make_client(max_retries=3, backoff=Backoff(initial=0.04, maximum=0.08, jitter=0.0))
    whop_emulator.fail_next(3, status=500)

    await client.notifications.create(**SEND)

    retries = messages(whop_logs, logging.INFO)
    waits = [message.split(" in ")[1].split(" s ")[0] for message in retries]
    assert waits == ["0.040", "0.080", "0.080"]
    assert all(
        gap >= wait - 0.005
        for gap, wait in zip(gaps(whop_emulator), (0.04, 0.08, 0.08), strict=True)
    )


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


async def test_a_lost_response_retried_does_not_notify_twice(
    whop_client: AsyncWhop, whop_emulator: WhopEmulator
) -> None:
    whop_emulator.script(ScriptedResponse(fault=Fault.ACCEPT_THEN_DROP))

    response = await whop_client.notifications.create(**SEND)

    assert response.success is True
    assert whop_emulator.request_count == 2
    assert len(whop_emulator.notifications) == 1


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
    client = make_client(timeout=0.2, max_retries=1)
    whop_emulator.script(*[ScriptedResponse(fault=Fault.HANG)] * 2)
    started = time.monotonic()

    with pytest.raises(APITimeoutError, match="timed out"):
        await client.notifications.create(**SEND)

    assert 0.35 <= time.monotonic() - started < 2.0
    assert whop_emulator.request_count == 2


async def test_a_body_that_trickles_in_too_slowly_times_out(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(timeout=0.2, max_retries=0)
    whop_emulator.script(ScriptedResponse(fault=Fault.SLOW_BODY, delay=0.05))

    with pytest.raises(APITimeoutError):
        await client.notifications.create(**SEND)


async def test_a_slow_answer_times_out_and_the_retry_succeeds(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(timeout=0.2, max_retries=1)
    whop_emulator.script(ScriptedResponse(delay=1.0))

    response = await client.notifications.create(**SEND)

    assert response.success is True
    assert whop_emulator.request_count == 2


async def test_cancelling_a_call_propagates_at_once_and_frees_the_connection(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(connection_limit=1, timeout=5.0)
    whop_emulator.script(ScriptedResponse(fault=Fault.HANG))
    sending = asyncio.create_task(client.notifications.create(**SEND))
    await wait_for_request(whop_emulator)

    sending.cancel()
    started = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await sending

    assert time.monotonic() - started < 0.5
    assert client.session is not None
    assert client.session.connector is not None
    assert len(client.session.connector._acquired) == 0  # aiohttp's set of lent connections
    response = await asyncio.wait_for(client.notifications.create(**SEND), timeout=1.0)
    assert response.success is True


async def test_cancelling_during_the_backoff_sleep_propagates(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(backoff=Backoff(initial=10.0, maximum=10.0, jitter=0.0))
    whop_emulator.fail_next(1, status=503)
    sending = asyncio.create_task(client.notifications.create(**SEND))
    while whop_emulator.request_count == 0 or whop_emulator.in_flight:
        await asyncio.sleep(0.005)

    sending.cancel()

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(sending, timeout=1.0)
    assert whop_emulator.request_count == 1


async def test_a_crowded_pool_queues_calls_instead_of_timing_them_out(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(connection_limit=1, timeout=0.3, max_retries=0)
    whop_emulator.response_delay = 0.1

    results = await asyncio.gather(*(client.notifications.create(**SEND) for _ in range(5)))

    assert all(result.success for result in results)
    assert whop_emulator.peak_in_flight == 1


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


async def test_tls_with_a_trusted_private_ca(certificate_authority: trustme.CA) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    certificate_authority.configure_trust(client_context)

    async with WhopEmulator(ssl_context=server_context) as server:
        assert server.base_url.startswith("https://127.0.0.1:")
        async with AsyncWhop(server.api_key, base_url=server.base_url, ssl=client_context) as c:
            response = await c.notifications.create(**SEND)

    assert response.success is True
    assert len(server.notifications) == 1


async def test_an_untrusted_certificate_fails_at_once_without_retries(
    certificate_authority: trustme.CA, whop_logs: list[logging.LogRecord]
) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1").configure_cert(server_context)

    async with WhopEmulator(ssl_context=server_context) as server:
        client = AsyncWhop(server.api_key, base_url=server.base_url, max_retries=3)
        async with client:
            with pytest.raises(APIConnectionError, match=r"TLS error talking to 127\.0\.0\.1"):
                await client.notifications.create(**SEND)

    assert server.request_count == 0
    assert messages(whop_logs, logging.INFO) == []


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
