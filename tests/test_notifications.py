"""client.notifications: what is sent, what comes back, and what never leaves the process."""

from __future__ import annotations

import gzip
import json
import platform
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

import whop_async
from whop_async import (
    APIResponseValidationError,
    AsyncWhop,
    AuthenticationError,
    InternalServerError,
    InvalidParamsError,
    NotificationCreateParams,
    NotificationCreateResponse,
)
from whop_async.testing import Fault, ScriptedResponse, WhopEmulator

MakeClient = Callable[..., AsyncWhop]
SEND: dict[str, Any] = {"company_id": "biz_1", "title": "Hi", "content": "Hello"}


async def test_create_sends_exactly_the_given_fields(
    whop_client: AsyncWhop, whop_emulator: WhopEmulator
) -> None:
    response = await whop_client.notifications.create(
        company_id="biz_1", title="Deploy", content="It shipped"
    )

    assert response == NotificationCreateResponse(success=True)
    (notification,) = whop_emulator.notifications
    assert notification.body == {"company_id": "biz_1", "title": "Deploy", "content": "It shipped"}
    assert b"null" not in whop_emulator.requests[0].body


async def test_create_sends_every_optional_field_that_is_given(
    whop_client: AsyncWhop, whop_emulator: WhopEmulator
) -> None:
    await whop_client.notifications.create(
        experience_id="exp_1",
        title="Deploy",
        content="It shipped",
        user_ids=["VXNlci0xMA==", 11],
        icon_user_id="VXNlci0xMA==",
        subtitle="v2.0",
        rest_path="/releases/2",
    )

    assert whop_emulator.notifications[0].body == {
        "experience_id": "exp_1",
        "title": "Deploy",
        "content": "It shipped",
        "user_ids": ["VXNlci0xMA==", 11],
        "icon_user_id": "VXNlci0xMA==",
        "subtitle": "v2.0",
        "rest_path": "/releases/2",
    }


async def test_send_takes_params_built_ahead_of_time(
    whop_client: AsyncWhop, whop_emulator: WhopEmulator
) -> None:
    params = NotificationCreateParams(
        company_id="biz_1", title="Hi", content="Hello", idempotency_key="row-17"
    )

    response = await whop_client.notifications.send(params)

    assert response.success is True
    assert whop_emulator.idempotency_keys() == ["row-17"]
    assert whop_emulator.notifications[0].body == SEND


async def test_send_refuses_anything_but_params(
    whop_client: AsyncWhop, whop_emulator: WhopEmulator
) -> None:
    with pytest.raises(TypeError, match="NotificationCreateParams, got dict"):
        await whop_client.notifications.send(SEND)  # type: ignore[arg-type]

    assert whop_emulator.request_count == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"company_id": None}, "account_id"),
        ({"experience_id": "exp_1"}, "company_id"),
        ({"title": ""}, "title"),
        ({"title": 5}, "title"),
        ({"content": "  "}, "content"),
        ({"user_ids": "VXNlci0xMA=="}, "user_ids"),
        ({"user_ids": [1, 2.5]}, "user_ids[1]"),
        ({"icon_user_id": True}, "icon_user_id"),
        ({"subtitle": 3}, "subtitle"),
        ({"rest_path": ""}, "rest_path"),
        ({"idempotency_key": "two\nlines"}, "idempotency_key"),
    ],
)
async def test_invalid_input_is_refused_before_any_request(
    whop_client: AsyncWhop,
    whop_emulator: WhopEmulator,
    overrides: dict[str, Any],
    field: str,
) -> None:
    with pytest.raises(InvalidParamsError) as caught:
        await whop_client.notifications.create(**{**SEND, **overrides})

    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, TypeError)
    assert whop_emulator.request_count == 0


async def test_unknown_response_fields_are_kept_in_extra(
    whop_client: AsyncWhop, whop_emulator: WhopEmulator
) -> None:
    whop_emulator.script(ScriptedResponse(body={"success": True, "id": "ntf_1", "queued": 3}))

    response = await whop_client.notifications.create(**SEND)

    assert response.success is True
    assert response.extra == {"id": "ntf_1", "queued": 3}


async def test_success_false_is_an_answer_not_an_error(
    whop_client: AsyncWhop, whop_emulator: WhopEmulator
) -> None:
    whop_emulator.script(ScriptedResponse(body={"success": False}))

    response = await whop_client.notifications.create(**SEND)

    assert response.success is False


@pytest.mark.parametrize(
    ("status", "body", "content_type", "said"),
    [
        (200, b"<html>oops</html>", "text/html", "not JSON: <html>oops</html>"),
        (200, b"", "application/json", "(empty body)"),
        (201, b'{"queued": true}', "application/json", "not a NotificationCreateResponse"),
        (200, b"null", "application/json", "expected a JSON object"),
        (200, b'[{"success": true}]', "application/json", "expected a JSON object"),
        (200, b'{"success": "yes"}', "application/json", "expected bool"),
    ],
)
async def test_a_2xx_that_is_not_a_notification_result_is_a_validation_error(
    whop_client: AsyncWhop,
    whop_emulator: WhopEmulator,
    status: int,
    body: bytes,
    content_type: str,
    said: str,
) -> None:
    whop_emulator.script(
        ScriptedResponse(
            status=status,
            body=body,
            content_type=content_type,
            headers={"X-Request-Id": "req_2xx"},
        )
    )

    with pytest.raises(APIResponseValidationError) as caught:
        await whop_client.notifications.create(**SEND)

    error = caught.value
    assert said in str(error)
    assert error.status_code == status
    assert error.raw_body == body.decode()
    assert error.request_id == "req_2xx"
    assert whop_emulator.request_count == 1


async def test_a_parsed_but_wrong_2xx_body_is_kept_on_the_error(
    whop_client: AsyncWhop, whop_emulator: WhopEmulator
) -> None:
    whop_emulator.script(ScriptedResponse(body={"ok": True}))

    with pytest.raises(APIResponseValidationError) as caught:
        await whop_client.notifications.create(**SEND)

    assert caught.value.body == {"ok": True}
    assert json.loads(caught.value.raw_body) == {"ok": True}


async def test_a_2xx_body_over_the_size_limit_is_refused(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(max_response_bytes=64)
    whop_emulator.script(ScriptedResponse(body={"success": True, "padding": "x" * 1000}))

    with pytest.raises(APIResponseValidationError, match="larger than 64 bytes") as caught:
        await client.notifications.create(**SEND)

    assert caught.value.status_code == 200
    assert len(caught.value.raw_body) == 64
    assert whop_emulator.request_count == 1


async def test_an_error_body_over_the_size_limit_is_cut_but_still_reported(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(max_response_bytes=32, max_retries=0)
    whop_emulator.script(ScriptedResponse(status=500, body="E" * 500, content_type="text/plain"))

    with pytest.raises(InternalServerError) as caught:
        await client.notifications.create(**SEND)

    assert caught.value.body == "E" * 32


async def test_every_request_carries_the_documented_headers(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(app_id="app_123")

    await client.notifications.create(**SEND)

    headers = whop_emulator.requests[0].headers
    assert headers["Authorization"] == f"Bearer {whop_emulator.api_key}"
    assert headers["Content-Type"] == "application/json"
    assert headers["Accept"] == "application/json"
    assert headers["X-Whop-App-Id"] == "app_123"
    assert headers["User-Agent"] == (
        f"whop-async/{whop_async.__version__} "
        f"(python {platform.python_version()}; aiohttp {aiohttp.__version__})"
    )
    assert re.fullmatch(
        r"whop-async/\S+ \(python [\d.]+\S*; aiohttp [\d.]+\S*\)", headers["User-Agent"]
    )


async def test_each_call_gets_its_own_idempotency_key(
    whop_client: AsyncWhop, whop_emulator: WhopEmulator
) -> None:
    await whop_client.notifications.create(**SEND)
    await whop_client.notifications.create(**SEND)

    first, second = whop_emulator.idempotency_keys()
    assert first != second
    assert first is not None
    assert re.fullmatch(r"[0-9a-f]{32}", first)  # 128 random bits
    assert len(whop_emulator.notifications) == 2


async def test_all_attempts_of_one_call_share_its_idempotency_key(
    whop_client: AsyncWhop, whop_emulator: WhopEmulator
) -> None:
    whop_emulator.fail_next(2, status=503)

    await whop_client.notifications.create(**SEND)

    keys = {request.headers["Idempotency-Key"] for request in whop_emulator.requests}
    assert len(whop_emulator.requests) == 3
    assert len(keys) == 1


async def test_a_callers_idempotency_key_makes_a_rerun_safe(
    whop_client: AsyncWhop, whop_emulator: WhopEmulator
) -> None:
    first = await whop_client.notifications.create(**SEND, idempotency_key="order-42")
    again = await whop_client.notifications.create(**SEND, idempotency_key="order-42")

    assert first.success is again.success is True
    assert whop_emulator.idempotency_keys() == ["order-42"]
    assert [r.headers["Idempotency-Key"] for r in whop_emulator.requests] == ["order-42"] * 2


async def test_a_wrong_key_is_an_authentication_error_without_retries(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(api_key="sk_wrong_key", max_retries=3)

    with pytest.raises(AuthenticationError, match="401 - Invalid API key") as caught:
        await client.notifications.create(**SEND)

    assert "sk_wrong_key" not in str(caught.value)
    assert whop_emulator.request_count == 1
    assert whop_emulator.notifications == []


async def test_a_compressed_answer_is_read(
    whop_client: AsyncWhop, whop_emulator: WhopEmulator
) -> None:
    body = gzip.compress(b'{"success": true, "via": "gzip"}')
    whop_emulator.script(ScriptedResponse(body=body, headers={"Content-Encoding": "gzip"}))

    response = await whop_client.notifications.create(**SEND)

    assert response.extra == {"via": "gzip"}


async def test_a_small_compressed_body_cannot_inflate_past_the_size_limit(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(max_response_bytes=1000)
    bomb = gzip.compress(json.dumps({"success": True, "pad": "x" * 100_000}).encode())
    assert len(bomb) < 1000
    whop_emulator.script(ScriptedResponse(body=bomb, headers={"Content-Encoding": "gzip"}))

    with pytest.raises(APIResponseValidationError, match="larger than 1000 bytes") as caught:
        await client.notifications.create(**SEND)

    assert len(caught.value.raw_body) == 1000


async def test_a_2xx_body_without_a_declared_length_is_capped_too(
    make_client: MakeClient, whop_emulator: WhopEmulator
) -> None:
    client = make_client(max_response_bytes=4096)
    whop_emulator.script(ScriptedResponse(body=b"x", fault=Fault.ENDLESS_BODY))

    with pytest.raises(APIResponseValidationError, match="larger than 4096 bytes") as caught:
        await client.notifications.create(**SEND)

    assert caught.value.raw_body == "x" * 4096
    assert whop_emulator.request_count == 1


def test_idempotency_keys_are_unique_across_draws_and_forks() -> None:
    # Keys are cut from one larger random draw; a forked child must not repeat its parent's.
    script = """
import os
from whop_async._keys import new_idempotency_key
keys = {new_idempotency_key() for _ in range(1000)}
assert len(keys) == 1000, "keys repeat within one process"
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write_end, new_idempotency_key().encode())
    os._exit(0)
os.waitpid(pid, 0)
child_key = os.read(read_end, 64).decode()
parent_key = new_idempotency_key()
assert child_key != parent_key, "the child repeated the parent's next key"
print("ok")
"""
    completed = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "ok"
