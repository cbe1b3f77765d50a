"""What a production service needs from each call: a pinned version, what happened on the
wire, escape hatches for headers and body, and Whop's error shape (issue 17)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from whop_async import (
    API_VERSION,
    AsyncWhop,
    Backoff,
    BadRequestError,
    InvalidParamsError,
    NotificationCreateParams,
    NotificationCreateResponse,
    UnprocessableEntityError,
    gather_notifications,
    iter_notifications,
)
from whop_async.testing import RELEASED_API_VERSIONS, WhopEmulator

MakeClient = Callable[..., AsyncWhop]
SEND: dict[str, Any] = {"account_id": "biz_1", "title": "Hi", "content": "Hello"}


@pytest.fixture(autouse=True)
def _no_version_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WHOP_API_VERSION", raising=False)


# The pinned version


def test_the_pinned_version_is_one_whop_released() -> None:
    assert API_VERSION in RELEASED_API_VERSIONS
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}(-\d+)?", API_VERSION)


async def test_with_options_can_move_one_copy_to_another_version_or_to_none(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client()
    older = sorted(RELEASED_API_VERSIONS)[0]

    await client.notifications.create(**SEND)
    await client.with_options(api_version=older).notifications.create(**SEND)
    await client.with_options(api_version=None).notifications.create(**SEND)

    sent = [request.headers.get("Api-Version-Date") for request in whop_emulator.requests]
    assert sent == [API_VERSION, older, None]


async def test_a_version_whop_never_released_is_refused_by_whop_not_by_the_client(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(api_version="2024-12-31")  # date-shaped, never released

    with pytest.raises(BadRequestError, match="2024-12-31"):
        await client.notifications.create(**SEND)

    assert whop_emulator.request_count == 1


# What happened on the wire


async def test_a_response_says_which_request_it_was_and_how_many_attempts_it_took(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(max_retries=3)
    whop_emulator.fail_next(2, status=503)

    response = await client.notifications.create(**SEND, idempotency_key="order-7")

    assert response.success is True
    assert response.attempts == 3
    assert response.idempotency_key == "order-7"
    assert response.replayed is False
    assert response.request_id is not None
    assert response.request_id.startswith("req_")
    assert whop_emulator.requests[-1].headers["Idempotency-Key"] == "order-7"


async def test_a_rerun_under_the_same_key_is_marked_replayed_and_equal_to_the_first(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client()

    first = await client.notifications.create(**SEND, idempotency_key="welcome-42")
    again = await client.notifications.create(**SEND, idempotency_key="welcome-42")
    other = await client.notifications.create(**SEND)

    assert (first.replayed, again.replayed, other.replayed) == (False, True, False)
    assert first == again == other  # what the wire said takes no part in equality
    assert len(whop_emulator.notifications) == 2
    assert "request_id" in repr(again)


def test_metadata_is_never_read_from_a_body() -> None:
    assert NotificationCreateResponse(success=True, request_id="x") == NotificationCreateResponse(
        success=True
    )


# Escape hatches


async def test_extra_headers_and_default_headers_reach_the_wire(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(default_headers={"X-Tenant": "acme", "X-Trace": "default"})

    await client.notifications.create(**SEND, extra_headers={"X-Trace": "call-1"})
    await client.with_options(default_headers={"X-Tenant": "other"}).notifications.create(**SEND)

    first, second = (request.headers for request in whop_emulator.requests)
    assert (first["X-Tenant"], first["X-Trace"]) == ("acme", "call-1")
    assert second["X-Tenant"] == "other"
    assert "X-Trace" not in second


async def test_a_user_agent_suffix_names_the_application(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(user_agent="billing-service/2.3")

    await client.notifications.create(**SEND)

    agent = whop_emulator.requests[0].headers["User-Agent"]
    assert agent.startswith("whop-async/")
    assert agent.endswith(" billing-service/2.3")


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"Authorization": "Bearer other"}, "extra_headers"),
        ({"idempotency-key": "k"}, "extra_headers"),
        ({"Host": "evil.example"}, "extra_headers"),
        ({"X-Evil": "a\r\nInjected: 1"}, "extra_headers['X-Evil']"),
        ({"Bad Name": "x"}, "extra_headers"),
        ({"X-Count": 3}, "extra_headers['X-Count']"),
    ],
)
async def test_unsafe_or_reserved_extra_headers_are_refused_before_any_io(
    make_client: MakeClient, whop_emulator: WhopEmulator, headers: dict[str, Any], field: str
) -> None:
    client = make_client()

    with pytest.raises(InvalidParamsError) as caught:
        await client.notifications.create(**SEND, extra_headers=headers)

    assert caught.value.field == field
    assert whop_emulator.request_count == 0
    with pytest.raises(InvalidParamsError) as at_construction:
        make_client(default_headers=headers)
    assert at_construction.value.field == field.replace("extra_headers", "default_headers")


async def test_extra_body_is_merged_once_and_sent_byte_identical_on_every_attempt(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(max_retries=2)
    whop_emulator.fail_next(2, status=502)

    await client.notifications.create(**SEND, extra_body={"subtitle": "from extra_body"})

    bodies = {request.body for request in whop_emulator.requests}
    assert len(bodies) == 1  # three attempts, one serialization
    assert json.loads(bodies.pop())["subtitle"] == "from extra_body"


async def test_an_extra_field_whop_does_not_know_is_whops_to_refuse(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client()

    with pytest.raises((BadRequestError, UnprocessableEntityError)) as caught:
        await client.notifications.create(**SEND, extra_body={"priority": "high"})

    assert json.loads(whop_emulator.requests[0].body)["priority"] == "high"
    assert caught.value.param == "priority" or "priority" in caught.value.message


async def test_bulk_items_carry_their_own_extra_headers_and_body(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client()
    items: list[object] = [
        {**SEND, "extra_headers": {"X-Trace": "row-0"}, "extra_body": {"subtitle": "row 0"}},
        NotificationCreateParams(**SEND, extra_headers={"X-Trace": "row-1"}),
        SEND,
    ]

    results = await gather_notifications(client, items, concurrency=1)

    assert [result.success for result in results] == [True, True, True]
    sent = {
        request.headers.get("X-Trace"): json.loads(request.body)
        for request in whop_emulator.requests
    }
    assert set(sent) == {"row-0", "row-1", None}
    assert sent["row-0"]["subtitle"] == "row 0"
    assert all("extra_headers" not in body and "extra_body" not in body for body in sent.values())


async def test_a_calls_extras_win_over_the_ones_its_params_carry(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    params = NotificationCreateParams(
        **SEND,
        extra_headers={"X-Trace": "params", "X-Tenant": "acme"},
        extra_body={"subtitle": "params"},
    )

    await make_client().notifications.send(
        params, extra_headers={"X-Trace": "call"}, extra_body={"subtitle": "call"}
    )

    request = whop_emulator.requests[0]
    assert (request.headers["X-Trace"], request.headers["X-Tenant"]) == ("call", "acme")
    assert json.loads(request.body)["subtitle"] == "call"


def test_a_params_repr_shows_its_extra_header_names_but_not_their_values() -> None:
    params = NotificationCreateParams(**SEND, extra_headers={"X-Signature": "s3cr3t"})

    assert "X-Signature" in repr(params)
    assert "s3cr3t" not in repr(params)


@pytest.mark.parametrize(
    ("extras", "field"),
    [
        ({"extra_headers": {"Idempotency-Key": "k"}}, "extra_headers"),
        ({"extra_headers": {"X-Evil": "a\nb"}}, "extra_headers['X-Evil']"),
        ({"extra_body": {1: "x"}}, "extra_body"),
    ],
)
async def test_a_bulk_item_with_bad_extras_fails_alone_before_any_io(
    make_client: MakeClient, whop_emulator: WhopEmulator, extras: dict[str, Any], field: str
) -> None:
    outcomes = sorted(
        [
            outcome
            async for outcome in iter_notifications(make_client(), [{**SEND, **extras}, SEND])
        ],
        key=lambda outcome: outcome.index,
    )

    assert [outcome.ok for outcome in outcomes] == [False, True]
    error = outcomes[0].error
    assert isinstance(error, InvalidParamsError)
    assert error.field == field
    assert len(whop_emulator.requests) == 1


@pytest.mark.parametrize("extra_body", [{"when": object()}, {1: "x"}, ["not", "a", "mapping"]])
async def test_an_extra_body_that_is_not_json_is_refused_before_any_io(
    make_client: MakeClient, whop_emulator: WhopEmulator, extra_body: Any
) -> None:
    with pytest.raises(InvalidParamsError) as caught:
        await make_client().notifications.create(**SEND, extra_body=extra_body)

    assert caught.value.field == "extra_body"
    assert whop_emulator.request_count == 0


async def test_a_per_call_timeout_and_rate_limit_wait_are_checked_and_used(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(backoff=Backoff.instant())
    with pytest.raises(InvalidParamsError, match="timeout"):
        await client.notifications.create(**SEND, timeout=0)
    with pytest.raises(InvalidParamsError, match="max_rate_limit_wait"):
        await client.notifications.create(**SEND, max_rate_limit_wait=-1)

    response = await client.notifications.create(**SEND, timeout=None, max_rate_limit_wait=0)

    assert response.success
    assert whop_emulator.request_count == 1


# Whop's error shape


async def test_a_refusal_keeps_whops_type_code_and_param(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client()

    with pytest.raises((BadRequestError, UnprocessableEntityError)) as caught:
        await client.notifications.create(**SEND, extra_body={"title": ""})

    error = caught.value
    assert error.type is not None
    assert error.request_id is not None
    assert error.message
    assert error.param in (None, "title")
