"""Reliability and security under faults: every story runs against the emulator on real sockets.

The sections follow issue 5: stale pooled connections, lost responses, a crowded pool, broken
responses, server hints, cancellation, fatal and final statuses, redirects, TLS, plain http,
header injection, shutdown, and secrets. Each test also checks that the API key shows up in no
exception or repr it produced (``assert_no_secret``); conftest.py checks the log records.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from whop_async import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AsyncWhop,
    AuthenticationError,
    Backoff,
    BadRequestError,
    BatchAbortedError,
    ClientClosedError,
    InternalServerError,
    InvalidParamsError,
    NotFoundError,
    PermissionDeniedError,
    UnprocessableEntityError,
    WhopError,
    gather_notifications,
    is_retryable,
)
from whop_async.testing import DEFAULT_API_KEY, FakeClock, Fault, ScriptedResponse, WhopEmulator

MakeClient = Callable[..., AsyncWhop]
SEND: dict[str, Any] = {"company_id": "biz_faults", "title": "Hi", "content": "Hello"}
KEY = DEFAULT_API_KEY


def assert_no_secret(*objects: object) -> None:
    """Neither ``str`` nor ``repr`` of these (nor of any exception they chain to) holds the key."""
    seen: set[int] = set()
    pending = list(objects)
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        assert KEY not in str(current), f"the API key leaked into str({type(current).__name__})"
        assert KEY not in repr(current), f"the API key leaked into repr({type(current).__name__})"
        if isinstance(current, BaseException):
            pending += [current.__cause__, current.__context__]


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds, failing after ``timeout`` seconds instead of hanging."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def retries_logged(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.getMessage().startswith("Retrying POST")]


# 1. A pooled keep-alive connection that the server closed


async def test_a_pooled_connection_closed_by_the_server_is_retried_with_the_same_key(
    make_client: MakeClient, whop_emulator: WhopEmulator, whop_logs: list[logging.LogRecord]
) -> None:
    client = make_client(connection_limit=1)
    await client.notifications.create(**{**SEND, "title": "first"})
    assert whop_emulator.close_connections() == 1  # the idle keep-alive connection in the pool

    response = await client.notifications.create(
        **{**SEND, "title": "second"}, idempotency_key="k-1"
    )

    assert response.success is True
    assert [n.body["title"] for n in whop_emulator.notifications] == ["first", "second"]
    assert whop_emulator.idempotency_keys()[1] == "k-1"
    retried = retries_logged(whop_logs)
    assert len(retried) == 1
    # Which error a stale connection gives depends on timing: the client may see the server's
    # FIN first (ServerDisconnectedError) or its RST on write (ECONNRESET). Both are retried.
    assert "ServerDisconnectedError" in retried[0] or "Connection reset by peer" in retried[0]
    assert_no_secret(client)


# 2. The server accepts the notification, then the connection dies before the response


async def test_a_lost_response_is_retried_with_the_same_key_and_stored_once(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client()
    whop_emulator.script(ScriptedResponse(fault=Fault.ACCEPT_THEN_DROP))

    response = await client.notifications.create(**SEND)

    assert response.success is True
    assert len(whop_emulator.notifications) == 1
    assert whop_emulator.request_count == 2
    first, retry = whop_emulator.requests
    assert first.headers["Idempotency-Key"] == retry.headers["Idempotency-Key"]
    assert first.body == retry.body


async def test_the_emulator_replays_the_same_key_and_body_and_refuses_a_different_body(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client()
    await client.notifications.create(**SEND, idempotency_key="same")

    replayed = await client.notifications.create(**SEND, idempotency_key="same")
    with pytest.raises(BadRequestError, match="different body") as caught:
        await client.notifications.create(**{**SEND, "title": "other"}, idempotency_key="same")

    assert replayed.success is True
    assert len(whop_emulator.notifications) == 1
    assert caught.value.status_code == 400
    assert whop_emulator.request_count == 3  # a 400 is final: not retried
    assert_no_secret(caught.value)


async def test_a_replay_is_marked_as_such(whop_emulator: WhopEmulator) -> None:
    async with AsyncWhop(KEY, base_url=whop_emulator.base_url) as client:
        first = await client.notifications.create(**SEND, idempotency_key="marked")
        again = await client.notifications.create(**SEND, idempotency_key="marked")

    assert (first.replayed, again.replayed) == (False, True)
    assert again == first  # the same answer: metadata takes no part in equality
    assert again.request_id == first.request_id  # Whop's replay carries the first request's id
    assert again.idempotency_key == first.idempotency_key == "marked"
    assert "Idempotent-Replayed" not in whop_emulator.requests[0].headers
    assert len(whop_emulator.notifications) == 1


# 3. A fan-out wider than the connection pool


async def test_twenty_calls_through_two_connections_all_succeed_within_a_short_timeout(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(connection_limit=2, timeout=0.3, max_retries=0)
    whop_emulator.response_delay = 0.1

    results = await asyncio.gather(
        *(client.notifications.create(**{**SEND, "title": f"t{i}"}) for i in range(20))
    )

    assert all(result.success for result in results)
    assert len(whop_emulator.notifications) == 20
    assert whop_emulator.peak_in_flight == 2


async def test_a_bulk_send_wider_than_the_pool_queues_instead_of_timing_out(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(connection_limit=2, timeout=0.3, max_retries=0)
    whop_emulator.response_delay = 0.1

    results = await gather_notifications(
        client, ({**SEND, "title": f"t{i}"} for i in range(16)), concurrency=8
    )

    assert all(not isinstance(result, Exception) for result in results)
    assert len(whop_emulator.notifications) == 16
    assert whop_emulator.peak_in_flight == 2


# 4. Responses that are slow, short, huge, or not what they should be


async def test_slow_headers_end_in_a_timeout_after_the_retries(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(timeout=0.1, max_retries=2)
    whop_emulator.script(*[ScriptedResponse(delay=1.0)] * 3)

    with pytest.raises(APITimeoutError) as caught:
        await client.notifications.create(**SEND)

    assert whop_emulator.request_count == 3
    assert_no_secret(caught.value, client)


async def test_a_body_that_trickles_in_ends_in_a_timeout(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(timeout=0.2, max_retries=1)
    whop_emulator.script(*[ScriptedResponse(fault=Fault.SLOW_BODY, delay=0.1)] * 2)

    with pytest.raises(APITimeoutError) as caught:
        await client.notifications.create(**SEND)

    assert whop_emulator.request_count == 2
    assert_no_secret(caught.value)


async def test_a_body_cut_short_ends_in_a_connection_error_after_the_retries(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(max_retries=2)
    whop_emulator.script(*[ScriptedResponse(fault=Fault.TRUNCATE)] * 3)

    with pytest.raises(APIConnectionError) as caught:
        await client.notifications.create(**SEND)

    assert type(caught.value) is APIConnectionError
    assert whop_emulator.request_count == 3
    assert_no_secret(caught.value)


@pytest.mark.parametrize("status", [200, 503])
async def test_an_endless_body_is_cut_at_the_cap_without_holding_it(
    make_client: MakeClient, whop_emulator: WhopEmulator, status: int
) -> None:
    client = make_client(max_response_bytes=64 * 1024, max_retries=0, connection_limit=1)
    whop_emulator.script(
        ScriptedResponse(status=status, body=b"x" * 1000, fault=Fault.ENDLESS_BODY)
    )

    with pytest.raises(WhopError) as caught:
        await asyncio.wait_for(client.notifications.create(**SEND), timeout=2.0)

    error = caught.value
    expected = APIResponseValidationError if status == 200 else InternalServerError
    assert type(error) is expected
    assert isinstance(error, (APIResponseValidationError, APIStatusError))
    assert error.status_code == status
    assert 0 < len(error.raw_body) <= 64 * 1024
    assert len(str(error)) < 1000
    assert_no_secret(error)
    # The cut connection went back to no one: the pool's one connection is free for the next.
    assert (await asyncio.wait_for(client.notifications.create(**SEND), 5.0)).success is True


@pytest.mark.parametrize(
    ("response", "error_type", "raw_body"),
    [
        pytest.param(
            ScriptedResponse(body=b'\xff\xfe{"success": true}'),
            APIResponseValidationError,
            '\ufffd\ufffd{"success": true}',
            id="invalid-utf8-200",
        ),
        pytest.param(ScriptedResponse(body=b""), APIResponseValidationError, "", id="empty-200"),
        pytest.param(ScriptedResponse(body=None), APIResponseValidationError, "null", id="null"),
        pytest.param(
            ScriptedResponse(body=[1, 2]), APIResponseValidationError, "[1, 2]", id="list"
        ),
        pytest.param(
            ScriptedResponse(body={"success": "yes"}),
            APIResponseValidationError,
            '{"success": "yes"}',
            id="success-not-bool",
        ),
        pytest.param(
            ScriptedResponse(body={}), APIResponseValidationError, "{}", id="empty-object"
        ),
        pytest.param(
            ScriptedResponse(status=400, body=b"\xff\xfe bad", content_type="text/plain"),
            BadRequestError,
            "\ufffd\ufffd bad",
            id="invalid-utf8-400",
        ),
        pytest.param(
            ScriptedResponse(status=404, body=["not", "an", "object"]),
            NotFoundError,
            '["not", "an", "object"]',
            id="list-404",
        ),
        pytest.param(
            ScriptedResponse(status=422, body=b"", content_type="text/plain"),
            UnprocessableEntityError,
            "",
            id="empty-422",
        ),
    ],
)
async def test_a_malformed_response_is_a_typed_error_with_the_raw_body(
    make_client: MakeClient,
    whop_emulator: WhopEmulator,
    response: ScriptedResponse,
    error_type: type[WhopError],
    raw_body: str,
) -> None:
    client = make_client(max_retries=2)
    whop_emulator.script(response)

    with pytest.raises(WhopError) as caught:
        await client.notifications.create(**SEND)

    error = caught.value
    assert type(error) is error_type
    assert isinstance(error, (APIResponseValidationError, APIStatusError))
    assert error.status_code == response.status
    assert error.raw_body == raw_body
    assert whop_emulator.request_count == 1
    assert_no_secret(error)


@pytest.mark.parametrize("status", [502, 503])
async def test_an_html_error_page_from_a_proxy_is_retried_then_reported(
    make_client: MakeClient, whop_emulator: WhopEmulator, status: int
) -> None:
    client = make_client(max_retries=1)
    page = "<html><head><title>Bad gateway</title></head><body><h1>nginx</h1></body></html>"
    whop_emulator.script(
        *[ScriptedResponse(status=status, body=page, content_type="text/html")] * 2
    )

    with pytest.raises(InternalServerError) as caught:
        await client.notifications.create(**SEND)

    assert caught.value.status_code == status
    assert caught.value.raw_body == page
    assert "nginx" in str(caught.value)
    assert whop_emulator.request_count == 2
    assert_no_secret(caught.value)


# 5. Retry-After values a server should not send


def past_http_date() -> str:
    return email.utils.formatdate(time.time() - 3600, usegmt=True)


@pytest.mark.parametrize(
    "retry_after",
    ["-5", "0", "0.0", "nan", "inf", "soon", "", "1e999", "Mon, 99 Foo 2024", "past-date"],
)
async def test_an_unusable_retry_after_falls_back_to_backoff(
    make_client: MakeClient, whop_emulator: WhopEmulator, retry_after: str
) -> None:
    clock = FakeClock(auto_advance=True)
    client = make_client(backoff=Backoff(initial=0.02, maximum=0.02, jitter=0.0), clock=clock)
    value = past_http_date() if retry_after == "past-date" else retry_after
    whop_emulator.fail_next(1, status=503, headers={"Retry-After": value})

    response = await client.notifications.create(**SEND)

    assert response.success is True
    assert clock.slept == [0.02]  # the backoff's, not the header's
    assert whop_emulator.status_counts == {503: 1, 200: 1}


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"Retry-After": "0.15"}, 0.15),
        ({"retry-after-ms": "150"}, 0.15),
        ({"Retry-After": "86400"}, 0.2),  # capped at max_retry_after
        ({"retry-after-ms": "1e12"}, 0.2),
    ],
)
async def test_a_usable_retry_after_is_honoured_up_to_the_cap(
    make_client: MakeClient, whop_emulator: WhopEmulator, headers: dict[str, str], wait: float
) -> None:
    clock = FakeClock(auto_advance=True)
    client = make_client(
        backoff=Backoff(initial=0.0, maximum=0.0, max_retry_after=0.2), clock=clock
    )
    whop_emulator.fail_next(1, status=429, headers=headers)

    await client.notifications.create(**SEND)

    assert clock.slept == [wait]
    assert whop_emulator.status_counts == {429: 1, 200: 1}


# 6. Cancellation


async def test_cancelling_a_call_in_flight_propagates_at_once_and_frees_its_connection(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(connection_limit=1, timeout=30.0)
    whop_emulator.script(ScriptedResponse(fault=Fault.HANG))
    sending = asyncio.create_task(client.notifications.create(**SEND))
    await until(lambda: whop_emulator.in_flight == 1)

    sending.cancel()

    # Far sooner than the call's 30 s timeout; and the pool's one connection is free again
    # (the server still holds the hung request, so the next call needs a connection of its own).
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(sending, timeout=5.0)
    assert (await asyncio.wait_for(client.notifications.create(**SEND), 5.0)).success
    assert (whop_emulator.request_count, whop_emulator.in_flight) == (2, 1)


async def test_cancelling_a_call_in_its_backoff_sleep_stops_it_at_once(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    clock = FakeClock()  # the backoff never ends by itself
    client = make_client(
        connection_limit=1, backoff=Backoff(initial=30.0, maximum=30.0, jitter=0.0), clock=clock
    )
    whop_emulator.fail_next(1, status=500)
    sending = asyncio.create_task(client.notifications.create(**SEND))
    await until(lambda: clock.sleepers == [30.0])  # the 500 came back: asleep in the backoff

    sending.cancel()

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(sending, timeout=5.0)
    assert clock.sleepers == []
    assert whop_emulator.request_count == 1
    assert (await asyncio.wait_for(client.notifications.create(**SEND), 5.0)).success


async def test_cancelling_a_bulk_send_with_many_in_flight_frees_every_connection(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(connection_limit=8)
    whop_emulator.script(*[ScriptedResponse(fault=Fault.HANG)] * 8)
    batch = ({**SEND, "title": f"t{i}"} for i in range(100))
    sending = asyncio.create_task(gather_notifications(client, batch, concurrency=16))
    await until(lambda: whop_emulator.in_flight == 8)

    sending.cancel()

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(sending, timeout=5.0)
    # The eight hung requests stay at the server; eight new calls must find eight connections
    # free at once to be there together with them.
    whop_emulator.response_delay = 0.1
    again = gather_notifications(client, [SEND] * 8, concurrency=8)
    assert len(await asyncio.wait_for(again, 5.0)) == 8
    assert whop_emulator.request_count == 16
    assert whop_emulator.peak_in_flight == 16


# 7. Statuses that end a call (or a batch) at once


async def test_an_auth_storm_stops_a_bulk_send_at_once(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(max_retries=3)
    whop_emulator.fail_next(200, status=401)
    batch = ({**SEND, "title": f"t{i}"} for i in range(200))

    results = await gather_notifications(client, batch, concurrency=4, return_exceptions=True)

    assert whop_emulator.request_count <= 4  # the requests already in flight, no retries
    assert len(results) == 200
    assert isinstance(results[0], AuthenticationError)
    aborted = [r for r in results if isinstance(r, BatchAbortedError)]
    assert len(aborted) >= 196
    assert_no_secret(results[0], aborted[0])


async def test_a_403_storm_costs_one_request_per_audience(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(max_retries=3)
    whop_emulator.fail_next(200, status=403)
    batch = ({**SEND, "title": f"t{i}"} for i in range(200))  # one audience

    results = await gather_notifications(client, batch, concurrency=4, return_exceptions=True)

    assert whop_emulator.request_count <= 4  # the requests already in flight, no retries
    assert all(isinstance(r, PermissionDeniedError) for r in results)
    assert_no_secret(results[0])


async def test_a_wrong_key_fails_once_and_names_no_secret(whop_emulator: WhopEmulator) -> None:
    wrong = f"{KEY}_but_wrong"
    async with AsyncWhop(wrong, base_url=whop_emulator.base_url, max_retries=3) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.notifications.create(**SEND)

    assert whop_emulator.request_count == 1
    assert caught.value.status_code == 401
    assert wrong not in str(caught.value)
    assert wrong not in repr(client)


@pytest.mark.parametrize(
    ("status", "error_type"),
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
    make_client: MakeClient, whop_emulator: WhopEmulator, status: int, error_type: type[Exception]
) -> None:
    client = make_client(max_retries=5)
    whop_emulator.fail_next(5, status=status)

    with pytest.raises(APIStatusError) as caught:
        await client.notifications.create(**SEND)

    assert type(caught.value) is error_type
    assert caught.value.status_code == status
    assert whop_emulator.request_count == 1
    assert_no_secret(caught.value)


# 8. Redirects


@pytest.fixture
async def elsewhere() -> AsyncIterator[WhopEmulator]:
    """A second server, on another port, that a redirect points to."""
    async with WhopEmulator(api_key=None) as server:
        yield server


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_not_followed_and_never_carries_the_key_elsewhere(
    make_client: MakeClient, whop_emulator: WhopEmulator, elsewhere: WhopEmulator, status: int
) -> None:
    client = make_client(max_retries=2)
    location = f"http://localhost:{elsewhere.port}/api/v1/notifications"
    whop_emulator.script(ScriptedResponse(status=status, body=b"", headers={"Location": location}))

    with pytest.raises(APIStatusError) as caught:
        await client.notifications.create(**SEND)

    assert caught.value.status_code == status
    assert location in str(caught.value)
    assert whop_emulator.request_count == 1
    assert elsewhere.request_count == 0
    assert_no_secret(caught.value)


# 9. TLS


@pytest.fixture
def tls_server_context(certificate_authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1").configure_cert(context)
    return context


async def test_certificates_are_verified_by_default_and_a_failure_is_not_retried(
    tls_server_context: ssl.SSLContext, whop_logs: list[logging.LogRecord]
) -> None:
    handshakes: list[str | None] = []
    tls_server_context.sni_callback = lambda _sock, name, _ctx: handshakes.append(name)

    async with (
        WhopEmulator(ssl_context=tls_server_context) as server,
        AsyncWhop(KEY, base_url=server.base_url, max_retries=3) as client,
    ):
        with pytest.raises(APIConnectionError) as caught:
            await client.notifications.create(**SEND)

    assert type(caught.value) is APIConnectionError
    message = str(caught.value)
    assert "TLS error talking to 127.0.0.1" in message
    assert "certificate" in message.lower()
    assert "ssl=" in message  # says what to do about a private CA
    assert server.request_count == 0
    assert len(handshakes) == 1  # one connection attempt: no retry
    assert retries_logged(whop_logs) == []
    assert not is_retryable(caught.value)  # the public predicate agrees
    assert_no_secret(caught.value, client)


async def test_a_caller_supplied_context_that_trusts_the_ca_works(
    tls_server_context: ssl.SSLContext, certificate_authority: trustme.CA
) -> None:
    trusting = ssl.create_default_context()
    certificate_authority.configure_trust(trusting)

    async with (
        WhopEmulator(ssl_context=tls_server_context) as server,
        AsyncWhop(KEY, base_url=server.base_url, ssl=trusting) as client,
    ):
        response = await client.notifications.create(**SEND)

    assert server.base_url.startswith("https://127.0.0.1:")
    assert response.success is True
    assert len(server.notifications) == 1


# 10. Plain http to a remote host


@pytest.mark.parametrize(
    ("base_url", "warned"),
    [
        ("http://10.1.2.3/api/v1", True),
        ("http://api.example.com/api/v1", True),
        ("http://127.0.0.1:8080/api/v1", False),
        ("http://localhost/api/v1", False),
        ("http://[::1]:8080/api/v1", False),
        ("https://10.1.2.3/api/v1", False),
    ],
)
def test_plain_http_to_a_non_loopback_host_warns_without_any_io(
    caplog: pytest.LogCaptureFixture, base_url: str, warned: bool
) -> None:
    with caplog.at_level(logging.WARNING, logger="whop_async"):
        client = AsyncWhop(KEY, base_url=base_url)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert bool(warnings) is warned
    assert all("unencrypted" in message for message in warnings)
    assert client.session is None  # nothing was opened, let alone sent
    assert_no_secret(client)


# 11. Header injection


@pytest.mark.parametrize(
    "value", ["key\r\nX-Evil: 1", "key\nX-Evil: 1", "key\r", "kéy", "key\x00", "ключ"]
)
@pytest.mark.parametrize("field", ["api_key", "app_id"])
def test_a_header_breaking_key_or_app_id_is_refused_at_construction(field: str, value: str) -> None:
    api_key, app_id = (value, None) if field == "api_key" else (KEY, value)

    with pytest.raises(InvalidParamsError, match=field) as caught:
        AsyncWhop(api_key, base_url="https://api.example.com/v1", app_id=app_id)

    assert caught.value.field == field
    assert value not in str(caught.value)  # an injection attempt is not echoed back


@pytest.mark.parametrize("value", ["id\r\nX-Evil: 1", "id\n", "idé", "id\t", "🔑"])
async def test_a_header_breaking_idempotency_key_is_refused_before_any_io(
    make_client: MakeClient, whop_emulator: WhopEmulator, value: str
) -> None:
    client = make_client()

    with pytest.raises(InvalidParamsError) as caught:
        await client.notifications.create(**SEND, idempotency_key=value)

    assert caught.value.field == "idempotency_key"
    assert whop_emulator.request_count == 0
    assert client.session is None


# 12. Shutdown


SHUTDOWN_PROGRAM = """
import asyncio
from whop_async import AsyncWhop, Backoff, gather_notifications
from whop_async.testing import Fault, ScriptedResponse, WhopEmulator

SEND = {"company_id": "biz_1", "title": "Hi", "content": "Hello"}

async def main():
    async with WhopEmulator() as server:
        async with AsyncWhop(
            server.api_key, base_url=server.base_url, backoff=Backoff.instant(), timeout=0.2
        ) as client:
            await client.notifications.create(**SEND)
            server.script(ScriptedResponse(fault=Fault.DROP), ScriptedResponse(fault=Fault.HANG))
            await client.notifications.create(**SEND)
            await gather_notifications(client, [SEND] * 20, concurrency=5)
            server.script(ScriptedResponse(fault=Fault.HANG))
            hanging = asyncio.create_task(client.notifications.create(**SEND))
            for _ in range(1000):  # until the server holds it, at most 5 s
                if server.in_flight:
                    break
                await asyncio.sleep(0.005)
            hanging.cancel()
        assert len(server.notifications) == 22, len(server.notifications)
    print("done")

asyncio.run(main())
"""


def test_a_program_using_the_client_exits_cleanly(tmp_path: Path) -> None:
    script = tmp_path / "program.py"
    script.write_text(textwrap.dedent(SHUTDOWN_PROGRAM))

    finished = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", str(script)],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert finished.stdout == "done\n"
    assert finished.stderr == ""
    assert finished.returncode == 0


def test_one_client_used_from_a_second_event_loop_is_refused() -> None:
    loop = asyncio.new_event_loop()
    server = WhopEmulator()
    try:
        loop.run_until_complete(server.start())
        client = AsyncWhop(KEY, base_url=server.base_url)
        loop.run_until_complete(client.notifications.create(**SEND))

        async def from_another_loop() -> None:
            await client.notifications.create(**SEND)

        with pytest.raises(ClientClosedError, match="another event loop") as caught:
            asyncio.run(from_another_loop())

        assert server.request_count == 1
        loop.run_until_complete(client.notifications.create(**SEND))  # its own loop still works
        assert server.request_count == 2
        assert_no_secret(caught.value, client)
    finally:
        loop.run_until_complete(client.close())
        loop.run_until_complete(server.stop())
        loop.close()
