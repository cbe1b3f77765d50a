"""The exception tree, and what each error tells the caller about a failed response."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import pytest

from whop_async import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AsyncWhop,
    AuthenticationError,
    BadRequestError,
    BatchAbortedError,
    BulkSendError,
    ClientClosedError,
    ConflictError,
    InternalServerError,
    InvalidParamsError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
    WhopError,
)
from whop_async._exceptions import server_message, shorten, status_error
from whop_async.testing import Fault, ScriptedResponse, WhopEmulator

MakeClient = Callable[..., AsyncWhop]
SEND: dict[str, Any] = {"company_id": "biz_1", "title": "Hi", "content": "Hello"}


@pytest.mark.parametrize(
    ("error", "parent"),
    [
        (InvalidParamsError, WhopError),
        (InvalidParamsError, ValueError),
        (InvalidParamsError, TypeError),
        (ClientClosedError, WhopError),
        (BulkSendError, WhopError),
        (BatchAbortedError, WhopError),
        (APIError, WhopError),
        (APIConnectionError, APIError),
        (APITimeoutError, APIConnectionError),
        (APIResponseValidationError, APIError),
        (APIStatusError, APIError),
        (BadRequestError, APIStatusError),
        (AuthenticationError, APIStatusError),
        (PermissionDeniedError, APIStatusError),
        (NotFoundError, APIStatusError),
        (ConflictError, APIStatusError),
        (UnprocessableEntityError, APIStatusError),
        (RateLimitError, APIStatusError),
        (InternalServerError, APIStatusError),
    ],
)
def test_the_tree_is_as_drawn(error: type[Exception], parent: type[Exception]) -> None:
    assert issubclass(error, parent)


def test_status_errors_are_not_connection_errors() -> None:
    assert not issubclass(APIStatusError, APIConnectionError)
    assert not issubclass(APIResponseValidationError, APIStatusError)
    assert issubclass(WhopError, Exception)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (500, InternalServerError),
        (502, InternalServerError),
        (503, InternalServerError),
        (418, APIStatusError),
        (451, APIStatusError),
    ],
)
async def test_each_status_raises_its_own_class_with_the_details(
    make_client: MakeClient, whop_emulator: WhopEmulator, status: int, error: type[APIStatusError]
) -> None:
    client = make_client(max_retries=0, max_rate_limit_wait=0)
    whop_emulator.fail_next(
        1,
        status=status,
        body={"error": {"type": "oops", "message": "Company biz_1 not found"}},
        headers={"X-Request-Id": "req_abc123", "X-Extra": "yes"},
    )

    with pytest.raises(APIStatusError) as caught:
        await client.notifications.create(**SEND)

    raised = caught.value
    assert type(raised) is error
    assert raised.status_code == status
    assert raised.request_id == "req_abc123"
    assert raised.headers["x-extra"] == "yes"
    assert raised.body == {"error": {"type": "oops", "message": "Company biz_1 not found"}}
    assert str(raised) == f"Error code: {status} - Company biz_1 not found"
    assert str(whop_emulator.api_key) not in str(raised)
    assert str(whop_emulator.api_key) not in repr(raised)


async def test_errors_survive_pickling_as_task_queues_and_process_pools_need(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(max_retries=0)
    whop_emulator.fail_next(
        1,
        status=400,
        body={"error": {"code": "idempotency_key_mismatch", "message": "Key reused"}},
        headers={"X-Request-Id": "req_1"},
    )
    with pytest.raises(APIStatusError) as refused:
        await client.notifications.create(**SEND)
    whop_emulator.script(ScriptedResponse(fault=Fault.DROP))
    with pytest.raises(APIConnectionError) as dropped:
        await client.notifications.create(**SEND)
    raised: list[Exception] = [refused.value, dropped.value]
    built_here: list[Exception] = [
        InvalidParamsError("user_ids[2]", "must be a non-empty string"),
        BulkSendError("stopped after 1 of 2", [None, BatchAbortedError("never sent")]),
        ClientClosedError("closed"),
    ]

    for error in raised + built_here:
        copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
        assert type(copy) is type(error)
        assert str(copy) == str(error)
    status = pickle.loads(pickle.dumps(refused.value))  # noqa: S301
    assert type(status).__name__ == "IdempotencyKeyMismatchError"
    assert (status.status_code, status.code) == (400, "idempotency_key_mismatch")
    assert status.request_id == "req_1"
    assert status.headers["X-REQUEST-ID"] == "req_1"  # still case-insensitive
    assert status.idempotency_key == refused.value.idempotency_key is not None
    connection = pickle.loads(pickle.dumps(dropped.value))  # noqa: S301
    assert connection.idempotency_key == dropped.value.idempotency_key is not None
    field = pickle.loads(pickle.dumps(built_here[0]))  # noqa: S301
    assert field.field == "user_ids[2]"
    bulk = pickle.loads(pickle.dumps(built_here[1]))  # noqa: S301
    assert bulk.results[0] is None
    assert type(bulk.results[1]) is BatchAbortedError


async def test_a_proxy_html_page_is_kept_as_text(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(max_retries=0)
    page = "<html>\n  <body>502   Bad Gateway</body>\n</html>"
    whop_emulator.script(ScriptedResponse(status=502, body=page, content_type="text/html"))

    with pytest.raises(InternalServerError) as caught:
        await client.notifications.create(**SEND)

    assert caught.value.body == page
    assert caught.value.raw_body == page
    assert caught.value.request_id is None
    assert str(caught.value) == "Error code: 502 - <html> <body>502 Bad Gateway</body> </html>"


async def test_an_empty_error_body(make_client: MakeClient, whop_emulator: WhopEmulator) -> None:
    client = make_client(max_retries=0)
    whop_emulator.script(ScriptedResponse(status=503, body=b""))

    with pytest.raises(InternalServerError) as caught:
        await client.notifications.create(**SEND)

    assert caught.value.body is None
    assert str(caught.value) == "Error code: 503 - (empty body)"


async def test_a_long_body_is_shortened_in_the_message_but_kept_whole(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(max_retries=0)
    whop_emulator.fail_next(1, status=400, body={"error": {"message": "x" * 2000}})

    with pytest.raises(BadRequestError) as caught:
        await client.notifications.create(**SEND)

    assert len(str(caught.value)) < 600
    assert str(caught.value).endswith("... [1500 more characters]")
    assert caught.value.body == {"error": {"message": "x" * 2000}}


async def test_the_emulators_own_validation_error_reaches_the_caller(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(api_key="sk_not_the_emulators")

    with pytest.raises(AuthenticationError) as caught:
        await client.notifications.create(**SEND)

    assert caught.value.body == {"error": {"type": "unauthorized", "message": "Invalid API key"}}
    error = caught.value
    assert (error.type, error.code, error.message) == ("unauthorized", None, "Invalid API key")
    assert caught.value.request_id is not None
    assert caught.value.request_id.startswith("req_")
    assert "sk_not_the_emulators" not in str(caught.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": {"message": "nested"}}, "nested"),
        ({"message": "flat"}, "flat"),
        ({"error": "plain"}, "plain"),
        ({"detail": "fastapi style"}, "fastapi style"),
        ({"error": {"code": 7}}, '{"error": {"code": 7}}'),
        (["a", "list"], '["a", "list"]'),
    ],
)
def test_the_server_message_is_found_in_any_json_shape(body: object, message: str) -> None:
    import json

    raw = json.dumps(body)

    assert server_message(json.loads(raw), raw) == (
        message if isinstance(body, dict) else " ".join(raw.split())
    )


def test_a_body_that_is_not_utf8_does_not_break_the_error() -> None:
    error = status_error(500, {}, b"\xff\xfe broken")

    assert isinstance(error, InternalServerError)
    assert "broken" in str(error)


def test_shorten_says_how_much_was_left_out() -> None:
    assert shorten("abc", 5) == "abc"
    assert shorten("abcdefgh", 5) == "abcde... [3 more characters]"


def test_invalid_params_error_names_its_field() -> None:
    error = InvalidParamsError("title", "must not be empty")

    assert error.field == "title"
    assert str(error) == "title: must not be empty"


def test_connection_errors_have_default_messages() -> None:
    assert str(APIConnectionError()) == "Connection error."
    assert str(APITimeoutError()) == "Request timed out."


def test_a_bulk_send_error_carries_every_outcome() -> None:
    aborted = BatchAbortedError("never sent")
    error = BulkSendError("stopped after 1 of 2", (None, aborted))

    assert error.results == [None, aborted]
    assert str(error) == "stopped after 1 of 2"


@pytest.mark.parametrize(
    ("headers", "said"),
    [
        ({"Location": "https://elsewhere.example/login"}, "https://elsewhere.example/login"),
        ({}, "(no Location header)"),
    ],
)
async def test_a_redirect_is_never_followed_and_says_where_it_pointed(
    make_client: MakeClient, whop_emulator: WhopEmulator, headers: dict[str, str], said: str
) -> None:
    client = make_client(max_retries=2)
    whop_emulator.script(ScriptedResponse(status=302, body=b"", headers=headers))

    with pytest.raises(APIStatusError) as caught:
        await client.notifications.create(**SEND)

    assert type(caught.value) is APIStatusError
    assert caught.value.status_code == 302
    assert f"(redirect to {said}, not followed; check base_url)" in str(caught.value)
    assert whop_emulator.request_count == 1
