"""Types of the public API, checked by ``mypy --strict tests/typing``; never run or collected.

Each ``assert_type`` fails the check if a public signature drifts; each ``type: ignore[code]``
fails it (as an unused ignore) if a mistake stops being a type error.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import aiohttp
from yarl import URL

from whop_async import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    AsyncWhop,
    Backoff,
    InvalidParamsError,
    NotificationCreateParams,
    NotificationCreateResponse,
    RateLimit,
    RateLimiter,
    RateLimitError,
    WhopError,
    derive_idempotency_key,
    gather_notifications,
)
from whop_async.testing import WhopEmulator

if sys.version_info >= (3, 11):
    from typing import assert_type
else:  # mypy reads typeshed's stub; at run time this file is only ever imported on 3.11+
    from typing_extensions import assert_type


async def public_api(emulator: WhopEmulator) -> None:
    async with AsyncWhop(
        "sk_test", base_url=emulator.base_url, backoff=Backoff.instant(), max_retries=0
    ) as client:
        assert_type(client, AsyncWhop)
        assert_type(client.base_url, URL)
        assert_type(client.timeout, float | None)
        assert_type(client.max_retries, int)
        assert_type(client.session, aiohttp.ClientSession | None)
        assert_type(client.with_options(timeout=1.0), AsyncWhop)
        assert_type(client.with_options(api_version="2026-08-21"), AsyncWhop)
        assert_type(client.rate_limit, RateLimit | None)
        assert_type(client.rate_limiter, RateLimiter)
        assert_type(client.api_version, str | None)
        assert_type(RateLimit(600, per=60.0).duration(100), float)
        assert_type(derive_idempotency_key("order-1", namespace="welcome"), str)
        AsyncWhop("k", rate_limit=None)
        AsyncWhop("k", rate_limit=RateLimit(60, per=6.0))
        AsyncWhop("k", rate_limit=600)  # type: ignore[arg-type]

        response = await client.notifications.create(
            account_id="biz_1", title="Hi", content="Hello", user_ids=["u_1", 2]
        )
        assert_type(response, NotificationCreateResponse)
        assert_type(response.success, bool)
        assert_type(response.extra, Mapping[str, Any])

        params = NotificationCreateParams(experience_id="exp_1", title="Hi", content="Hello")
        assert_type(await client.notifications.send(params), NotificationCreateResponse)

        await client.notifications.create(title=1, content="x")  # type: ignore[arg-type]
        await client.notifications.create("biz_1", "Hi", "Hello")  # type: ignore[call-arg]
        await client.notifications.send({"title": "Hi"})  # type: ignore[arg-type]

    try:
        await client.notifications.create(company_id="biz_1", title="Hi", content="Hello")
    except RateLimitError as error:
        assert_type(error.code, str | None)
        assert_type(error.message, str)
        assert_type(error.idempotency_key, str | None)
        assert_type(error.status_code, int)
        assert_type(error.headers, Mapping[str, str])
        assert_type(error.request_id, str | None)
        assert_type(error.raw_body, str)
    except APIStatusError as error:
        assert_type(error.body, object)
    except APIResponseValidationError as error:
        assert_type(error.status_code, int)
    except APIConnectionError as error:
        assert_type(str(error), str)
    except InvalidParamsError as error:
        assert_type(error.field, str)


async def gather_results_are_typed_by_return_exceptions(client: AsyncWhop) -> None:
    """Without return_exceptions the list holds responses only; with it, errors too."""
    items = [{"company_id": "biz_1", "title": "t", "content": "c"}]
    responses = await gather_notifications(client, items)
    successes: list[bool] = [response.success for response in responses]
    outcomes = await gather_notifications(client, items, return_exceptions=True)
    mixed: list[NotificationCreateResponse | WhopError] = outcomes
    assert successes is not None
    assert mixed is not None
