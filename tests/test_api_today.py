"""Whop's API as it is today (issue 9), end to end over real sockets against the emulator.

``account_id`` beside ``experience_id`` and the older ``company_id``; ``Api-Version-Date`` from
``api_version``, ``WHOP_API_VERSION`` and ``with_options``; Whop's error codes mapped to their
classes; the idempotency answers (replay, mismatch, in progress) as a caller lives them; and the
official ``whop-sdk`` talking to the same emulator.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from whop_async import (
    API_VERSION,
    APIConnectionError,
    APIStatusError,
    AsyncWhop,
    AuthenticationError,
    Backoff,
    BadRequestError,
    ConflictError,
    IdempotencyKeyMismatchError,
    IdempotencyRequestInProgressError,
    InternalServerError,
    InvalidParamsError,
    NotificationCreateParams,
    RateLimitError,
    UnprocessableEntityError,
)
from whop_async.testing import Fault, ScriptedResponse, WhopEmulator

MakeClient = Callable[..., AsyncWhop]
TEXT: dict[str, Any] = {"title": "Order paid", "content": "Order #1042 was paid."}
SEND: dict[str, Any] = {"account_id": "biz_1", **TEXT}
#: The version ``whop-sdk`` 2.6.0 pins by default.
SDK_PINNED_VERSION = "2026-10-15-1"
WHOP_SDK_VERSION = "2.6.0"


@pytest.fixture(autouse=True)
def _no_version_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WHOP_API_VERSION", raising=False)


def versions_sent(emulator: WhopEmulator) -> list[str | None]:
    return [request.headers.get("Api-Version-Date") for request in emulator.requests]


def keys_sent(emulator: WhopEmulator) -> list[str | None]:
    return [request.headers.get("Idempotency-Key") for request in emulator.requests]


async def wait_until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.005)


# The audience


@pytest.mark.parametrize(
    ("field", "value"),
    [("account_id", "biz_1"), ("company_id", "biz_1"), ("experience_id", "exp_1")],
)
async def test_the_body_carries_the_audience_field_given_under_its_own_name(
    whop_client: AsyncWhop, whop_emulator: WhopEmulator, field: str, value: str
) -> None:
    response = await whop_client.notifications.create(**{field: value}, **TEXT)

    assert response.success is True
    (notification,) = whop_emulator.notifications
    assert notification.body == {field: value, **TEXT}
    assert json.loads(whop_emulator.requests[0].body) == {field: value, **TEXT}


async def test_account_id_goes_through_send_and_prebuilt_params_too(
    whop_client: AsyncWhop, whop_emulator: WhopEmulator
) -> None:
    await whop_client.notifications.send(NotificationCreateParams(account_id="biz_2", **TEXT))

    assert whop_emulator.notifications[0].body == {"account_id": "biz_2", **TEXT}


@pytest.mark.parametrize(
    ("audience", "named"),
    [
        ({}, "account_id"),
        ({"account_id": "biz_1", "company_id": "biz_1"}, "company_id"),
        ({"account_id": "biz_1", "experience_id": "exp_1"}, "experience_id"),
        ({"company_id": "biz_1", "experience_id": "exp_1"}, "company_id"),
        ({"account_id": "biz_1", "experience_id": "exp_1", "company_id": "biz_1"}, "company_id"),
    ],
)
async def test_exactly_one_audience_is_checked_before_any_io(
    whop_client: AsyncWhop,
    whop_emulator: WhopEmulator,
    audience: dict[str, str],
    named: str,
) -> None:
    with pytest.raises(InvalidParamsError, match="exactly one of account_id") as caught:
        await whop_client.notifications.create(**audience, **TEXT)

    assert caught.value.field == named
    assert whop_emulator.request_count == 0
    assert whop_client.session is None  # not even a connection pool was opened


@pytest.mark.parametrize("value", [1, "", "   ", b"biz_1"])
async def test_a_bad_account_id_is_refused_before_any_io(
    whop_client: AsyncWhop, whop_emulator: WhopEmulator, value: object
) -> None:
    with pytest.raises(InvalidParamsError) as caught:
        await whop_client.notifications.create(account_id=value, **TEXT)  # type: ignore[arg-type]

    assert caught.value.field == "account_id"
    assert whop_emulator.request_count == 0


# Api-Version-Date


async def test_by_default_the_pinned_version_is_sent_on_every_attempt(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client()
    whop_emulator.fail_next(1, status=503)

    await client.notifications.create(**SEND)

    assert client.api_version == API_VERSION
    assert versions_sent(whop_emulator) == [API_VERSION, API_VERSION]
    assert whop_emulator.notifications[0].api_version == API_VERSION


async def test_api_version_none_sends_no_header_so_the_keys_own_pin_applies(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(api_version=None)
    whop_emulator.fail_next(1, status=503)

    await client.notifications.create(**SEND)

    assert client.api_version is None
    assert versions_sent(whop_emulator) == [None, None]
    assert whop_emulator.notifications[0].api_version is None


async def test_the_version_is_sent_on_every_attempt(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(api_version="2026-09-22-3")
    whop_emulator.fail_next(2, status=503)

    await client.notifications.create(**SEND)

    assert client.api_version == "2026-09-22-3"
    assert versions_sent(whop_emulator) == ["2026-09-22-3"] * 3
    assert len(set(keys_sent(whop_emulator))) == 1
    assert whop_emulator.notifications[0].api_version == "2026-09-22-3"


async def test_each_with_options_copy_sends_its_own_version(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(api_version="2026-08-21")
    newer = client.with_options(api_version="2026-09-22-3")
    unchanged = client.with_options(max_retries=0)
    newer_still = newer.with_options(timeout=3.0)

    for sender in (client, newer, unchanged, newer_still, client):
        await sender.notifications.create(**SEND)

    assert versions_sent(whop_emulator) == [
        "2026-08-21",
        "2026-09-22-3",
        "2026-08-21",
        "2026-09-22-3",
        "2026-08-21",
    ]
    assert (client.api_version, newer.api_version) == ("2026-08-21", "2026-09-22-3")


async def test_with_options_api_version_none_sends_no_header(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(api_version="2026-08-21")

    await client.with_options(api_version=None).notifications.create(**SEND)

    assert versions_sent(whop_emulator) == [None]


async def test_with_options_api_version_none_sends_no_header_even_with_the_variable_set(
    make_client: MakeClient, whop_emulator: WhopEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WHOP_API_VERSION", "2026-08-21")
    client = make_client()

    unpinned = client.with_options(api_version=None)

    assert unpinned.api_version is None


async def test_the_environment_variable_is_used_when_no_argument_is_given(
    make_client: MakeClient, whop_emulator: WhopEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WHOP_API_VERSION", "2026-08-21")
    from_env = make_client()
    explicit = make_client(api_version="2026-09-22-3")
    monkeypatch.setenv("WHOP_API_VERSION", "2026-10-15-1")  # read once, at construction

    await from_env.notifications.create(**SEND)
    await explicit.notifications.create(**SEND)

    assert (from_env.api_version, explicit.api_version) == ("2026-08-21", "2026-09-22-3")
    assert versions_sent(whop_emulator) == ["2026-08-21", "2026-09-22-3"]


async def test_an_empty_environment_variable_means_no_version(
    make_client: MakeClient, whop_emulator: WhopEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WHOP_API_VERSION", "")

    await make_client().notifications.create(**SEND)

    assert versions_sent(whop_emulator) == [None]


INJECTIONS = [
    "2026-08-21\r\nX-Evil: 1",
    "2026-08-21\nAuthorization: Bearer stolen",
    "2026-08-21\r",
    "2026-08-21\x00",
    "2026-08-21\t",
    "2026\u201308\u201321",  # en dashes: not ASCII
    " 2026-08-21",
    "2026-08-21 ",
    "   ",
]


@pytest.mark.parametrize("value", INJECTIONS)
async def test_an_unsafe_version_is_refused_at_construction(
    make_client: MakeClient, whop_emulator: WhopEmulator, value: str
) -> None:
    with pytest.raises(InvalidParamsError) as caught:
        make_client(api_version=value)

    assert caught.value.field == "api_version"
    assert whop_emulator.request_count == 0


@pytest.mark.parametrize("value", INJECTIONS)
async def test_an_unsafe_version_is_refused_from_the_environment_and_with_options(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    client = make_client()
    with pytest.raises(InvalidParamsError):
        client.with_options(api_version=value)
    if "\x00" in value:
        return  # an environment variable cannot hold a NUL
    monkeypatch.setenv("WHOP_API_VERSION", value)
    with pytest.raises(InvalidParamsError) as caught:
        make_client()

    assert caught.value.field == "api_version"


@pytest.mark.parametrize("value", [20260821, b"2026-08-21"])
async def test_a_version_that_is_not_a_string_is_refused(
    make_client: MakeClient, value: object
) -> None:
    with pytest.raises(InvalidParamsError, match="api_version"):
        make_client(api_version=value)


async def test_an_unknown_version_is_whops_400_with_its_code(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(api_version="2026-02-30")  # header-safe, but no such day

    with pytest.raises(BadRequestError) as caught:
        await client.notifications.create(**SEND)

    assert caught.value.code == "invalid_api_version"
    assert "2026-02-30" in caught.value.message
    assert whop_emulator.request_count == 1


# Error codes


def error_body(kind: str, message: str, *, code: str | None = None) -> dict[str, Any]:
    """Whop's ``V1ErrorResponse``: ``type`` always, ``code`` when there is a specific one."""
    return {"error": {"type": kind, "message": message, **({"code": code} if code else {})}}


MISMATCH = error_body("invalid_request_error", "Key reused", code="idempotency_key_mismatch")
IN_PROGRESS = error_body("conflict_error", "Still working", code="idempotency_request_in_progress")


@pytest.mark.parametrize(
    ("status", "body", "error_type", "kind", "code"),
    [
        (400, MISMATCH, IdempotencyKeyMismatchError, "invalid_request_error",
         "idempotency_key_mismatch"),
        (409, IN_PROGRESS, IdempotencyRequestInProgressError, "conflict_error",
         "idempotency_request_in_progress"),
        (400, error_body("invalid_request_error", "Bad field", code="parameter_invalid"),
         BadRequestError, "invalid_request_error", "parameter_invalid"),
        (400, {"error": {"code": "invalid_field", "message": "Older shape"}}, BadRequestError,
         None, "invalid_field"),
        (409, error_body("conflict_error", "Some conflict"), ConflictError, "conflict_error", None),
        (409, {"error": {**MISMATCH["error"], "message": "Odd status"}}, ConflictError,
         "invalid_request_error", "idempotency_key_mismatch"),
        (422, error_body("invalid_request_error", "Empty"), UnprocessableEntityError,
         "invalid_request_error", None),
        (429, error_body("rate_limit_exceeded", "Try again in 1 second."), RateLimitError,
         "rate_limit_exceeded", None),
        (500, error_body("server_error", "Oops"), InternalServerError, "server_error", None),
        (500, {"error": {"message": "No type"}}, InternalServerError, None, None),
        (502, "<html>Bad gateway</html>", InternalServerError, None, None),
    ],
)  # fmt: skip
async def test_each_error_maps_to_its_class_with_type_code_and_message(
    make_client: MakeClient,
    whop_emulator: WhopEmulator,
    status: int,
    body: Any,
    error_type: type[APIStatusError],
    kind: str | None,
    code: str | None,
) -> None:
    client = make_client(max_retries=0, max_rate_limit_wait=0)
    content_type = "application/json" if isinstance(body, dict) else "text/html"
    whop_emulator.script(ScriptedResponse(status=status, body=body, content_type=content_type))

    with pytest.raises(APIStatusError) as caught:
        await client.notifications.create(**SEND, idempotency_key="the-key")

    error = caught.value
    assert type(error) is error_type
    assert (error.status_code, error.type, error.code) == (status, kind, code)
    expected = body["error"]["message"] if isinstance(body, dict) else "<html>Bad gateway</html>"
    assert error.message == expected
    assert expected in str(error)
    assert error.idempotency_key == "the-key"


async def test_the_emulators_own_401_has_whops_error_shape(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(api_key="whop_wrong_key")

    with pytest.raises(AuthenticationError) as caught:
        await client.notifications.create(**SEND)

    assert caught.value.body == {"error": {"type": "unauthorized", "message": "Invalid API key"}}
    assert (caught.value.type, caught.value.code) == ("unauthorized", None)  # Whop names no code
    assert caught.value.message == "Invalid API key"
    assert caught.value.idempotency_key == whop_emulator.requests[0].headers["Idempotency-Key"]


# Idempotency, as a caller lives it


async def test_the_same_call_twice_is_replayed_not_doubled(
    whop_client: AsyncWhop, whop_emulator: WhopEmulator
) -> None:
    first = await whop_client.notifications.create(**SEND, idempotency_key="order-1042")
    second = await whop_client.notifications.create(**SEND, idempotency_key="order-1042")

    assert (first.success, second.success) == (True, True)
    assert len(whop_emulator.notifications) == 1
    assert whop_emulator.request_count == 2


async def test_a_mismatch_is_raised_at_once_and_never_retried(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(max_retries=5)
    await client.notifications.create(**SEND, idempotency_key="order-1042")

    with pytest.raises(IdempotencyKeyMismatchError) as caught:
        await client.notifications.create(
            **{**SEND, "content": "Order #1043 was paid."}, idempotency_key="order-1042"
        )

    error = caught.value
    assert isinstance(error, BadRequestError)
    assert (error.status_code, error.code) == (400, "idempotency_key_mismatch")
    assert "different body" in error.message
    assert error.idempotency_key == "order-1042"
    assert whop_emulator.request_count == 2
    assert len(whop_emulator.notifications) == 1


async def test_another_version_under_the_same_key_is_a_mismatch(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(api_version="2026-08-21", max_retries=5)
    await client.notifications.create(**SEND, idempotency_key="k")

    with pytest.raises(IdempotencyKeyMismatchError):
        await client.with_options(api_version="2026-09-22-3").notifications.create(
            **SEND, idempotency_key="k"
        )

    assert whop_emulator.request_count == 2


async def test_a_scripted_in_progress_409_is_retried_with_the_same_key(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(max_retries=2)
    whop_emulator.fail_next(
        2,
        status=409,
        body=IN_PROGRESS,
    )

    response = await client.notifications.create(**SEND)

    assert response.success is True
    assert whop_emulator.status_counts == {409: 2, 200: 1}
    assert len(set(keys_sent(whop_emulator))) == 1


async def test_a_slow_first_attempt_makes_the_retries_wait_for_it_then_replays(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    """The first attempt times out while Whop is still handling it; the retry is told so
    (409), backs off, and gets the first attempt's answer replayed: one notification."""
    client = make_client(timeout=0.1, max_retries=3, backoff=Backoff(initial=0.1, jitter=0.0))
    whop_emulator.response_delay = 0.3  # attempts at ~0 s (times out), ~0.2 s (409), ~0.4 s

    response = await client.notifications.create(**SEND)

    assert response.success is True
    assert whop_emulator.status_counts[409] >= 1
    assert whop_emulator.status_counts[200] == 2  # the first attempt's, and its replay
    assert len(set(keys_sent(whop_emulator))) == 1
    assert len(whop_emulator.notifications) == 1


async def test_in_progress_until_retries_run_out_then_a_resend_with_the_errors_key_is_safe(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(timeout=0.1, max_retries=2)
    whop_emulator.response_delay = 0.5

    with pytest.raises(IdempotencyRequestInProgressError) as caught:
        await client.notifications.create(**SEND)

    error = caught.value
    assert isinstance(error, ConflictError)
    assert (error.status_code, error.code) == (409, "idempotency_request_in_progress")
    assert error.idempotency_key is not None
    assert keys_sent(whop_emulator) == [error.idempotency_key] * 3
    await wait_until(lambda: whop_emulator.in_flight == 0)  # the first attempt is handled
    whop_emulator.response_delay = 0

    again = await client.notifications.create(**SEND, idempotency_key=error.idempotency_key)

    assert again.success is True
    assert len(whop_emulator.notifications) == 1  # replayed, not sent twice
    assert whop_emulator.status_counts == {409: 2, 200: 2}


async def test_after_a_lost_answer_the_errors_key_resends_without_doubling(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(max_retries=1)
    whop_emulator.script(*[ScriptedResponse(fault=Fault.ACCEPT_THEN_DROP)] * 2)

    with pytest.raises(APIConnectionError) as caught:
        await client.notifications.create(**SEND)
    key = caught.value.idempotency_key
    response = await client.notifications.create(**SEND, idempotency_key=key)

    assert response.success is True
    assert keys_sent(whop_emulator) == [key] * 3
    assert len(whop_emulator.notifications) == 1


async def test_after_5xx_the_errors_key_resends_and_the_server_sends_once(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(max_retries=1)
    whop_emulator.fail_next(2, status=503)

    with pytest.raises(InternalServerError) as caught:
        await client.notifications.create(**SEND, idempotency_key="job-7")
    again = await client.notifications.create(**SEND, idempotency_key=caught.value.idempotency_key)
    replayed = await client.notifications.create(**SEND, idempotency_key="job-7")

    assert caught.value.idempotency_key == "job-7"
    assert (again.success, replayed.success) == (True, True)
    assert len(whop_emulator.notifications) == 1


# The official SDK, against the same emulator


def _whop_sdk() -> Any:
    return pytest.importorskip(
        "whop_sdk",
        reason=f"whop-sdk=={WHOP_SDK_VERSION} is not installed (it is in noxfile.py's "
        "TEST_REQUIREMENTS): pip install whop-sdk==" + WHOP_SDK_VERSION,
    )


async def test_the_official_sdk_creates_a_notification_with_account_id(
    whop_emulator: WhopEmulator,
) -> None:
    whop_sdk = _whop_sdk()
    import httpx
    from whop_sdk.environment import WhopEnvironment

    assert whop_sdk.__version__ == WHOP_SDK_VERSION
    environment = WhopEnvironment(api=whop_emulator.base_url, vault=whop_emulator.base_url)
    async with httpx.AsyncClient() as http:
        client = whop_sdk.AsyncWhop(
            environment=environment, token=whop_emulator.api_key, httpx_client=http
        )
        response = await client.notifications.create(
            account_id="biz_1", title="Order paid", content="Order #1042 was paid."
        )

    assert response.success is True
    (notification,) = whop_emulator.notifications
    assert notification.body == {"account_id": "biz_1", **TEXT}
    assert notification.api_version == SDK_PINNED_VERSION
    assert notification.idempotency_key is None  # whop-sdk sends none unless told


async def test_the_official_sdks_client_wide_key_makes_a_second_notification_a_mismatch(
    whop_emulator: WhopEmulator,
) -> None:
    whop_sdk = _whop_sdk()
    import httpx
    from whop_sdk.environment import WhopEnvironment
    from whop_sdk.errors import BadRequestError as SdkBadRequestError

    environment = WhopEnvironment(api=whop_emulator.base_url, vault=whop_emulator.base_url)
    async with httpx.AsyncClient() as http:
        client = whop_sdk.AsyncWhop(
            environment=environment,
            token=whop_emulator.api_key,
            httpx_client=http,
            idempotency_key="one-key-for-the-client",
        )
        await client.notifications.create(account_id="biz_1", title="First", content="One")
        with pytest.raises(SdkBadRequestError) as caught:
            await client.notifications.create(account_id="biz_1", title="Second", content="Two")

    assert caught.value.body["error"]["code"] == "idempotency_key_mismatch"
    assert [n.body["title"] for n in whop_emulator.notifications] == ["First"]
