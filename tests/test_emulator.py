"""The emulator on its own, spoken to with a plain aiohttp session over real sockets, and
Whop's service underneath it, called without any.

It follows Whop's pages as they are today: ``account_id`` (and its older name ``company_id``),
``Api-Version-Date`` (only released values), the idempotency answers (replay byte for byte,
mismatch, in progress), the error shape (``type`` always, ``code`` where Whop names one).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import re
import typing
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from whop_async import API_VERSION, AsyncWhop, RateLimit
from whop_async.testing import (
    DEFAULT_API_KEY,
    RELEASED_API_VERSIONS,
    WHOP_RATE_LIMIT,
    Fault,
    RandomFaults,
    ScriptedResponse,
    WhopEmulator,
)
from whop_async.testing._limits import FixedWindow
from whop_async.testing._service import Admitted, Answer, Call, WhopService

AUTH = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
VALID: dict[str, Any] = {"account_id": "biz_1", "title": "Hi", "content": "Hello"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


def url(emulator: WhopEmulator) -> str:
    return f"{emulator.base_url}/notifications"


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds, failing after ``timeout`` seconds instead of hanging."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def post(
    http: aiohttp.ClientSession,
    emulator: WhopEmulator,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
) -> tuple[int, CIMultiDict[str], Any]:
    payload = data if data is not None else json.dumps(VALID if body is None else body).encode()
    async with http.post(
        url(emulator), data=payload, headers=AUTH if headers is None else headers
    ) as response:
        raw = await response.read()
        try:
            parsed: Any = json.loads(raw)
        except ValueError:
            parsed = raw
        return response.status, CIMultiDict(response.headers), parsed


async def test_it_listens_on_loopback_and_accepts_a_valid_notification(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator
) -> None:
    status, headers, body = await post(http, whop_emulator)

    assert whop_emulator.url == f"http://127.0.0.1:{whop_emulator.port}"
    assert whop_emulator.base_url.endswith("/api/v1")
    assert (status, body) == (200, {"success": True})
    assert headers["X-Request-Id"].startswith("req_")
    (notification,) = whop_emulator.notifications
    assert notification.body == VALID
    assert notification.idempotency_key is None
    (request,) = whop_emulator.requests
    assert (request.method, request.path) == ("POST", "/api/v1/notifications")
    assert json.loads(request.body) == VALID
    assert whop_emulator.status_counts == {200: 1}


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Missing bearer token"),
        ({"Authorization": "Basic abc"}, "Missing bearer token"),
        ({"Authorization": "Bearer "}, "Missing bearer token"),
        ({"Authorization": "Bearer nope"}, "Invalid API key"),
    ],
)
async def test_it_refuses_a_missing_or_wrong_bearer(
    http: aiohttp.ClientSession,
    whop_emulator: WhopEmulator,
    headers: dict[str, str],
    message: str,
) -> None:
    status, _, body = await post(http, whop_emulator, headers=headers)

    assert status == 401
    assert body == {"error": {"type": "unauthorized", "message": message}}
    assert whop_emulator.notifications == []
    assert len(whop_emulator.requests) == 1


async def test_with_no_api_key_set_it_accepts_any_bearer(http: aiohttp.ClientSession) -> None:
    async with WhopEmulator(api_key=None) as server:
        status, _, _ = await post(http, server, headers={"Authorization": "Bearer anything"})

    assert status == 200


@pytest.mark.parametrize(
    ("data", "status", "code", "message"),
    [
        (b"{not json", 400, "invalid_json", "Request body is not valid JSON"),
        (b"[]", 400, "invalid_json", "Request body must be a JSON object"),
        (
            b'{"account_id":"b","title":"t","content":"c","color":"red"}',
            400,
            "parameter_invalid",
            "Unknown field: color",
        ),
        (
            b'{"account_id":"b","content":"c"}',
            400,
            "parameter_missing",
            "Missing required field: title",
        ),
        (
            b'{"account_id":"b","title":"t"}',
            400,
            "parameter_missing",
            "Missing required field: content",
        ),
        (
            b'{"account_id":"b","title":1,"content":"c"}',
            400,
            "parameter_invalid",
            "title must be a string",
        ),
        (
            b'{"account_id":"b","title":null,"content":"c"}',
            400,
            "parameter_invalid",
            "title must be a string",
        ),
        (
            b'{"account_id":1,"title":"t","content":"c"}',
            400,
            "parameter_invalid",
            "account_id must be a string",
        ),
        (
            b'{"account_id":"b","title":"t","content":"c","icon_user_id":true}',
            400,
            "parameter_invalid",
            "must be an ID",
        ),
        (
            b'{"account_id":"b","title":"t","content":"c","user_ids":"u"}',
            400,
            "parameter_invalid",
            "list of IDs",
        ),
        (
            b'{"account_id":"b","title":"t","content":"c","user_ids":[1.5]}',
            400,
            "parameter_invalid",
            "list of IDs",
        ),
        (
            b'{"title":"t","content":"c"}',
            400,
            "parameter_missing",
            "Exactly one of experience_id or account_id (formerly company_id) is required",
        ),
        (b'{"account_id":null,"title":"t","content":"c"}', 400, "parameter_missing", "Exactly one"),
        (
            b'{"account_id":"b","experience_id":"e","title":"t","content":"c"}',
            400,
            "parameter_invalid",
            "Exactly one",
        ),
        (
            b'{"account_id":"b","company_id":"b","title":"t","content":"c"}',
            400,
            "parameter_invalid",
            "Exactly one",
        ),
        (
            b'{"company_id":"b","experience_id":"e","title":"t","content":"c"}',
            400,
            "parameter_invalid",
            "Exactly one",
        ),
        (
            b'{"account_id":"b","title":"  ","content":"c"}',
            422,
            "parameter_invalid",
            "title must not be empty",
        ),
        (
            b'{"account_id":"b","title":"t","content":""}',
            422,
            "parameter_invalid",
            "content must not be empty",
        ),
    ],
)
async def test_it_refuses_a_bad_body_with_a_json_error(
    http: aiohttp.ClientSession,
    whop_emulator: WhopEmulator,
    data: bytes,
    status: int,
    code: str,
    message: str,
) -> None:
    got_status, _, body = await post(http, whop_emulator, data=data)

    assert got_status == status
    assert message in body["error"]["message"]
    assert body["error"]["type"] == {400: "bad_request", 422: "unprocessable_entity"}[status]
    assert body["error"]["code"] == code
    assert {"type", "code", "message"} <= set(body["error"]) <= {"type", "code", "message", "param"}
    assert whop_emulator.notifications == []


@pytest.mark.parametrize(
    "audience",
    [
        {"account_id": "biz_1"},
        {"company_id": "biz_1"},
        {"experience_id": "exp_1"},
        {"account_id": "biz_1", "experience_id": None},
    ],
)
@pytest.mark.parametrize("version", [None, "2026-08-21"])
async def test_each_audience_field_is_accepted_with_or_without_a_version(
    http: aiohttp.ClientSession,
    whop_emulator: WhopEmulator,
    audience: dict[str, Any],
    version: str | None,
) -> None:
    body = {**audience, "title": "Hi", "content": "Hello"}
    headers = AUTH if version is None else {**AUTH, "Api-Version-Date": version}

    status, _, _ = await post(http, whop_emulator, body, headers=headers)

    assert status == 200
    assert whop_emulator.notifications[0].body == body


async def test_optional_fields_may_be_null_or_ids_of_either_kind(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator
) -> None:
    body = {**VALID, "user_ids": ["u_1", 2], "icon_user_id": 3, "subtitle": None}

    status, _, _ = await post(http, whop_emulator, body)

    assert status == 200
    assert whop_emulator.notifications[0].body == body


async def test_other_routes_are_404_and_recorded(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator
) -> None:
    async with http.get(url(whop_emulator), headers=AUTH) as response:
        body = await response.json()

    assert response.status == 404
    assert body["error"]["message"] == "No route for GET /api/v1/notifications"
    assert whop_emulator.requests[0].method == "GET"
    assert whop_emulator.status_counts == {404: 1}


async def test_the_same_key_and_body_replays_the_first_answer(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator
) -> None:
    headers = {**AUTH, "Idempotency-Key": "k-1"}

    first = await post(http, whop_emulator, headers=headers)
    second = await post(http, whop_emulator, headers=headers)

    assert first[0] == second[0] == 200
    assert "Idempotent-Replayed" not in first[1]
    assert second[1]["Idempotent-Replayed"] == "true"
    assert second[1]["X-Request-Id"] == first[1]["X-Request-Id"]
    assert second[2] == {"success": True}
    assert whop_emulator.idempotency_keys() == ["k-1"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"account_id": "biz_1", "title": " ", "content": "c"}, 422),
        ({"account_id": "biz_1", "experience_id": "exp_1", "title": "t", "content": "c"}, 400),
        ({"account_id": "biz_1", "title": "t", "content": "c", "color": "red"}, 400),
    ],
)
async def test_a_4xx_first_answer_is_replayed_too(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator, body: dict[str, Any], status: int
) -> None:
    headers = {**AUTH, "Idempotency-Key": "k-4xx"}

    first = await post(http, whop_emulator, body, headers=headers)
    second = await post(http, whop_emulator, body, headers=headers)

    assert first[0] == second[0] == status
    assert second[2] == first[2]
    assert "Idempotent-Replayed" not in first[1]
    assert second[1]["Idempotent-Replayed"] == "true"
    assert whop_emulator.notifications == []


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"body": {**VALID, "title": "Other"}}, "body"),
        ({"query": "?dry_run=1"}, "query"),
        ({"version": "2026-08-21"}, "Api-Version-Date"),
    ],
)
async def test_the_same_key_with_another_request_is_a_mismatch(
    http: aiohttp.ClientSession,
    whop_emulator: WhopEmulator,
    change: dict[str, Any],
    what: str,
) -> None:
    headers = {**AUTH, "Idempotency-Key": "k-1"}
    await post(http, whop_emulator, headers=headers)
    if "version" in change:
        headers["Api-Version-Date"] = change["version"]

    async with http.post(
        url(whop_emulator) + change.get("query", ""),
        data=json.dumps(change.get("body", VALID)).encode(),
        headers=headers,
    ) as response:
        body = await response.json()

    assert response.status == 400
    assert body["error"]["code"] == "idempotency_key_mismatch"
    assert what in body["error"]["message"]
    assert "Idempotent-Replayed" not in response.headers
    assert len(whop_emulator.notifications) == 1


async def test_a_version_given_then_left_out_is_a_mismatch_too(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator
) -> None:
    headers = {**AUTH, "Idempotency-Key": "k-1"}
    await post(http, whop_emulator, headers={**headers, "Api-Version-Date": "2026-08-21"})

    status, _, body = await post(http, whop_emulator, headers=headers)

    assert (status, body["error"]["code"]) == (400, "idempotency_key_mismatch")


async def test_keys_are_scoped_to_the_caller(http: aiohttp.ClientSession) -> None:
    async with WhopEmulator(api_key=None) as server:
        for token, title in (("key_a", "For A"), ("key_b", "For B")):
            headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "shared"}
            status, replayed, _ = await post(
                http, server, {**VALID, "title": title}, headers=headers
            )
            assert status == 200
            assert "Idempotent-Replayed" not in replayed

    assert [n.body["title"] for n in server.notifications] == ["For A", "For B"]


async def test_a_retry_while_the_first_is_being_handled_is_told_it_is_in_progress(
    http: aiohttp.ClientSession,
) -> None:
    headers = {**AUTH, "Idempotency-Key": "k-slow"}
    async with WhopEmulator(response_delay=0.3) as server:
        first = asyncio.create_task(post(http, server, headers=headers))
        await until(lambda: server.request_count == 1)  # in, and waiting out response_delay

        during = await post(http, server, headers=headers)
        answered_before_the_first = not first.done()
        again = await post(http, server, headers=headers)
        other_body = await post(http, server, {**VALID, "title": "Other"}, headers=headers)
        assert server.in_flight == 1  # all the while, the first was still being handled
        done = await first
        after = await post(http, server, headers=headers)

    assert (during[0], during[2]["error"]["code"]) == (409, "idempotency_request_in_progress")
    assert answered_before_the_first  # at once, not after the first one's delay
    assert again[0] == 409
    assert (other_body[0], other_body[2]["error"]["code"]) == (400, "idempotency_key_mismatch")
    assert done[0] == 200
    assert "Idempotent-Replayed" not in done[1]
    assert (after[0], after[1]["Idempotent-Replayed"]) == (200, "true")
    assert len(server.notifications) == 1
    assert server.status_counts == {200: 2, 409: 2, 400: 1}


async def test_reset_while_a_key_is_held_lets_it_go(http: aiohttp.ClientSession) -> None:
    headers = {**AUTH, "Idempotency-Key": "k-reset"}
    async with WhopEmulator(response_delay=0.2) as server:
        first = asyncio.create_task(post(http, server, headers=headers))
        await until(lambda: server.request_count == 1)
        server.reset()
        server.response_delay = 0
        during = await post(http, server, headers=headers)  # a fresh key: handled at once
        await first  # its answer comes after the reset and is not kept
        after = await post(http, server, headers=headers)

    assert during[0] == 200
    assert "Idempotent-Replayed" not in during[1]
    assert after[1]["Idempotent-Replayed"] == "true"
    assert after[1]["X-Request-Id"] == during[1]["X-Request-Id"]


async def test_a_request_without_a_key_is_never_deduplicated_nor_held(
    http: aiohttp.ClientSession,
) -> None:
    async with WhopEmulator(response_delay=0.1) as server:
        answers = await asyncio.gather(*(post(http, server) for _ in range(3)))

    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert len(server.notifications) == 3


async def test_scripted_answers_bypass_idempotency(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator
) -> None:
    headers = {**AUTH, "Idempotency-Key": "k-1"}
    whop_emulator.script(ScriptedResponse(status=503, body="down", content_type="text/plain"))

    first = await post(http, whop_emulator, headers=headers)
    second = await post(http, whop_emulator, headers=headers)

    assert first[0] == 503
    assert second[0] == 200
    assert "Idempotent-Replayed" not in second[1]  # the scripted 503 was not kept
    assert len(whop_emulator.notifications) == 1


async def test_a_lost_answer_is_replayed_to_the_retry(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator
) -> None:
    headers = {**AUTH, "Idempotency-Key": "k-lost"}
    whop_emulator.script(ScriptedResponse(fault=Fault.ACCEPT_THEN_DROP))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post(http, whop_emulator, headers=headers)

    status, headers_back, _ = await post(http, whop_emulator, headers=headers)

    assert (status, headers_back["Idempotent-Replayed"]) == (200, "true")
    assert len(whop_emulator.notifications) == 1


async def test_answers_are_replayed_only_for_the_ttl(http: aiohttp.ClientSession) -> None:
    headers = {**AUTH, "Idempotency-Key": "k-1"}
    async with WhopEmulator(idempotency_ttl=0.1) as server:
        await post(http, server, headers=headers)
        replayed = await post(http, server, headers=headers)
        await asyncio.sleep(0.15)
        fresh = await post(http, server, headers=headers)

    assert replayed[1]["Idempotent-Replayed"] == "true"
    assert fresh[0] == 200
    assert "Idempotent-Replayed" not in fresh[1]
    assert len(server.notifications) == 2


@pytest.mark.parametrize("key", ["", "k" * 256])
async def test_a_key_longer_than_255_characters_or_empty_is_refused(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator, key: str
) -> None:
    status, _, body = await post(http, whop_emulator, headers={**AUTH, "Idempotency-Key": key})

    assert (status, body["error"]["code"]) == (400, "invalid_idempotency_key")
    assert whop_emulator.notifications == []


async def test_a_key_of_255_characters_is_fine(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator
) -> None:
    status, _, _ = await post(http, whop_emulator, headers={**AUTH, "Idempotency-Key": "k" * 255})

    assert status == 200


# Api-Version-Date


@pytest.mark.parametrize("version", ["2025-01-01", "2026-08-21", "2026-09-22-3", API_VERSION])
async def test_a_released_version_is_accepted_and_recorded(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator, version: str
) -> None:
    status, _, _ = await post(http, whop_emulator, headers={**AUTH, "Api-Version-Date": version})

    assert status == 200
    assert whop_emulator.requests[0].api_version == version
    assert whop_emulator.notifications[0].api_version == version


async def test_without_a_version_header_none_is_recorded(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator
) -> None:
    await post(http, whop_emulator)

    assert whop_emulator.requests[0].api_version is None
    assert whop_emulator.notifications[0].api_version is None


@pytest.mark.parametrize(
    "version",
    [
        *("", "latest", "2026-8-21", "2026-13-01", "2026-02-30", "2026-08-21-", "20260821"),
        *("2024-12-31", "2026-08-22", "2026-10-15-12", "2026-10-15-2", "2027-01-01"),
    ],
)
async def test_a_version_whop_never_released_is_a_400(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator, version: str
) -> None:
    status, _, body = await post(http, whop_emulator, headers={**AUTH, "Api-Version-Date": version})

    assert status == 400
    assert body["error"]["code"] == "invalid_api_version"
    assert "Api-Version-Date" in body["error"]["message"]
    assert whop_emulator.notifications == []
    assert whop_emulator.requests[0].api_version == version


async def test_api_versions_limits_the_known_versions(http: aiohttp.ClientSession) -> None:
    async with WhopEmulator(api_versions={"2026-08-21"}) as server:
        known = await post(http, server, headers={**AUTH, "Api-Version-Date": "2026-08-21"})
        unknown = await post(http, server, headers={**AUTH, "Api-Version-Date": "2026-08-22"})
        none = await post(http, server)

    assert (known[0], unknown[0], none[0]) == (200, 400, 200)
    assert unknown[2]["error"]["code"] == "invalid_api_version"


async def test_an_unknown_version_is_refused_before_the_key_is_used(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator
) -> None:
    headers = {**AUTH, "Idempotency-Key": "k-1"}

    refused = await post(http, whop_emulator, headers={**headers, "Api-Version-Date": "soon"})
    fixed = await post(http, whop_emulator, headers={**headers, "Api-Version-Date": "2026-08-21"})

    assert refused[0] == 400
    assert fixed[0] == 200
    assert "Idempotent-Replayed" not in fixed[1]


async def test_scripted_answers_come_in_order_then_normal_service_resumes(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator
) -> None:
    whop_emulator.script(
        ScriptedResponse(status=503, body="down", content_type="text/plain"),
        ScriptedResponse(status=202, body=b"\x00raw", headers={"X-Custom": "1"}),
    )
    assert whop_emulator.pending_script == 2

    first = await post(http, whop_emulator)
    second = await post(http, whop_emulator)
    third = await post(http, whop_emulator)

    assert (first[0], first[1]["Content-Type"], first[2]) == (503, "text/plain", b"down")
    assert (second[0], second[1]["X-Custom"], second[2]) == (202, "1", b"\x00raw")
    assert third[0] == 200
    assert whop_emulator.pending_script == 0
    assert len(whop_emulator.notifications) == 1
    assert whop_emulator.status_counts == {503: 1, 202: 1, 200: 1}


async def test_fail_next_answers_with_an_error_body(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator
) -> None:
    whop_emulator.fail_next(2, status=502)

    statuses = [(await post(http, whop_emulator))[:3:2] for _ in range(3)]

    assert statuses == [
        (502, {"error": {"type": "internal_server_error", "message": "Scripted failure (502)"}}),
        (502, {"error": {"type": "internal_server_error", "message": "Scripted failure (502)"}}),
        (200, {"success": True}),
    ]


async def test_a_scripted_delay_holds_the_answer_back(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator
) -> None:
    whop_emulator.script(ScriptedResponse(delay=0.2))
    held = asyncio.create_task(post(http, whop_emulator, {**VALID, "title": "held"}))
    await until(lambda: whop_emulator.in_flight == 1)

    status, _, _ = await post(http, whop_emulator, {**VALID, "title": "next"})
    overtaken = not held.done()
    held_status, _, _ = await held

    assert (held_status, status) == (200, 200)
    assert [json.loads(request.body)["title"] for request in whop_emulator.requests] == [
        "held",
        "next",
    ]
    assert overtaken  # it came in first and was answered last


async def test_a_healthy_but_slow_server(http: aiohttp.ClientSession) -> None:
    async with WhopEmulator(response_delay=0.15) as server:
        sending = asyncio.create_task(post(http, server))
        await until(lambda: server.in_flight == 1)
        stored_while_held = len(server.notifications)
        status, _, _ = await sending

    assert status == 200
    assert stored_while_held == 0  # handled only once the delay was over
    assert len(server.notifications) == 1
    assert server.in_flight == 0


@pytest.mark.parametrize(("fault", "stored"), [(Fault.DROP, 0), (Fault.ACCEPT_THEN_DROP, 1)])
async def test_a_dropped_connection_gets_no_answer(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator, fault: Fault, stored: int
) -> None:
    whop_emulator.script(ScriptedResponse(fault=fault))

    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post(http, whop_emulator)

    assert len(whop_emulator.notifications) == stored
    assert whop_emulator.status_counts == {fault.value: 1}


async def test_a_hang_never_answers_until_the_client_gives_up(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator
) -> None:
    whop_emulator.script(ScriptedResponse(fault=Fault.HANG))

    with pytest.raises(asyncio.TimeoutError):
        async with http.post(
            url(whop_emulator), json=VALID, headers=AUTH, timeout=aiohttp.ClientTimeout(total=0.2)
        ):
            pass

    assert whop_emulator.in_flight == 1
    assert whop_emulator.notifications == []


async def test_stopping_releases_a_hanging_handler_at_once(http: aiohttp.ClientSession) -> None:
    server = WhopEmulator()
    await server.start()
    server.script(ScriptedResponse(fault=Fault.HANG))
    sending = asyncio.create_task(post(http, server))
    await until(lambda: server.in_flight == 1)

    # Released, not cancelled: it returns before the 0.5 s in which aiohttp would cancel it.
    await asyncio.wait_for(server.stop(), timeout=0.4)
    await server.stop()

    assert server.in_flight == 0
    with pytest.raises(aiohttp.ClientError):
        await sending


async def test_a_truncated_body_announces_more_than_it_sends(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator
) -> None:
    whop_emulator.script(
        ScriptedResponse(body={"success": True, "pad": "x" * 50}, fault=Fault.TRUNCATE)
    )

    async with http.post(url(whop_emulator), json=VALID, headers=AUTH) as response:
        assert response.status == 200
        assert response.content_length is not None
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_a_slow_body_arrives_whole_one_byte_at_a_time(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator
) -> None:
    whop_emulator.script(ScriptedResponse(body=b"12345", fault=Fault.SLOW_BODY, delay=0.03))
    loop = asyncio.get_running_loop()

    started = loop.time()
    async with http.post(url(whop_emulator), json=VALID, headers=AUTH) as response:
        chunks = [chunk async for chunk in response.content.iter_any()]
    took = loop.time() - started

    assert response.status == 200
    assert b"".join(chunks) == b"12345"
    assert len(chunks) > 1  # in pieces, not all at once
    # The emulator's own pauses are the behaviour under test: five of 0.03 s, give or take.
    assert took >= 0.1


async def test_by_default_it_enforces_whops_documented_limit() -> None:
    server = WhopEmulator()

    assert server.rate_limit == WHOP_RATE_LIMIT == RateLimit(600, per=60.0)


async def test_over_whops_limit_the_429_has_the_wait_in_its_message_only(
    http: aiohttp.ClientSession,
) -> None:
    async with WhopEmulator(rate_limit=RateLimit(2, per=60.0)) as server:
        answers = [await post(http, server) for _ in range(3)]

    assert [status for status, _, _ in answers] == [200, 200, 429]
    _, headers, body = answers[2]
    assert body["error"]["type"] == "rate_limit_exceeded"
    assert set(body["error"]) == {"type", "message"}
    assert re.fullmatch(r"Try again in \d+ seconds?\.", body["error"]["message"])
    assert "Retry-After" not in headers
    assert len(server.notifications) == 2


async def test_a_token_bucket_answers_429_with_retry_after(http: aiohttp.ClientSession) -> None:
    async with WhopEmulator(token_bucket=2) as server:
        statuses = []
        for _ in range(3):
            status, headers, body = await post(http, server)
            statuses.append(status)

    assert statuses == [200, 200, 429]
    assert int(headers["Retry-After"]) >= 1
    assert body["error"]["type"] == "rate_limit_exceeded"
    assert len(server.notifications) == 2
    assert server.status_counts == {200: 2, 429: 1}


async def test_random_faults_hit_every_request_at_rate_one(http: aiohttp.ClientSession) -> None:
    async with WhopEmulator(random_faults=RandomFaults(rate=1.0, seed=7)) as server:
        for _ in range(20):
            with contextlib.suppress(aiohttp.ServerDisconnectedError):
                await post(http, server)

    assert 200 not in server.status_counts
    assert set(server.status_counts) == {500, 429, "drop", "accept_then_drop"}
    assert sum(server.status_counts.values()) == 20


async def test_random_faults_at_rate_zero_change_nothing(http: aiohttp.ClientSession) -> None:
    async with WhopEmulator(random_faults=RandomFaults(rate=0.0)) as server:
        status, _, _ = await post(http, server)

    assert status == 200


async def test_recording_requests_can_be_turned_off(http: aiohttp.ClientSession) -> None:
    async with WhopEmulator(record_requests=False) as server:
        await post(http, server)

    assert server.requests == []
    assert server.request_count == 1
    assert len(server.notifications) == 1


async def test_reset_forgets_traffic_stored_keys_and_the_script(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator
) -> None:
    headers = {**AUTH, "Idempotency-Key": "k-1"}
    await post(http, whop_emulator, headers=headers)
    whop_emulator.fail_next(1)

    whop_emulator.reset()

    assert (whop_emulator.requests, whop_emulator.notifications) == ([], [])
    assert (whop_emulator.request_count, whop_emulator.status_counts) == (0, {})
    assert whop_emulator.pending_script == 0
    status, headers_back, _ = await post(
        http, whop_emulator, {**VALID, "title": "New"}, headers=headers
    )
    assert status == 200
    assert "Idempotent-Replayed" not in headers_back


async def test_it_tracks_peak_concurrency(http: aiohttp.ClientSession) -> None:
    async with WhopEmulator(response_delay=0.1) as server:
        await asyncio.gather(*(post(http, server) for _ in range(4)))

    assert server.peak_in_flight == 4
    assert server.in_flight == 0


async def test_the_plugin_client_is_bound_to_the_plugin_emulator(
    whop_client: AsyncWhop, whop_emulator: WhopEmulator
) -> None:
    await whop_client.notifications.create(**VALID)

    assert str(whop_client.base_url) == whop_emulator.base_url
    assert whop_client.timeout == 10.0
    assert len(whop_emulator.notifications) == 1


async def test_stopping_an_emulator_that_never_started_is_harmless() -> None:
    server = WhopEmulator()

    await server.stop()

    assert server.close_connections() == 0


async def test_close_connections_kills_idle_keep_alive_connections(
    whop_client: AsyncWhop, whop_emulator: WhopEmulator
) -> None:
    await whop_client.notifications.create(**VALID)

    closed = whop_emulator.close_connections()
    response = await whop_client.notifications.create(**VALID)

    assert closed == 1
    assert response.success is True
    assert len(whop_emulator.notifications) == 2


async def test_an_endless_body_streams_until_the_client_hangs_up(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator
) -> None:
    whop_emulator.script(ScriptedResponse(body=b"x", fault=Fault.ENDLESS_BODY))

    async with http.post(url(whop_emulator), json=VALID, headers=AUTH) as response:
        assert response.content_length is None
        received = 0
        async for chunk in response.content.iter_any():
            received += len(chunk)
            if received > 200_000:
                break

    assert received > 200_000


async def test_an_endless_body_stops_at_its_own_limit(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from whop_async.testing import _faults

    monkeypatch.setattr(_faults, "_ENDLESS_BODY_LIMIT", 3 * 65536)
    whop_emulator.script(ScriptedResponse(body=b"", fault=Fault.ENDLESS_BODY))

    with pytest.raises(aiohttp.ClientPayloadError):
        await post(http, whop_emulator)


async def test_an_injected_429_can_carry_retry_after_ms(http: aiohttp.ClientSession) -> None:
    faults = RandomFaults(rate=1.0, seed=3, retry_after="2", retry_after_ms="5")
    rate_limited = []
    async with WhopEmulator(random_faults=faults) as server:
        for _ in range(12):
            with contextlib.suppress(aiohttp.ServerDisconnectedError):
                status, headers, _ = await post(http, server)
                if status == 429:
                    rate_limited.append(headers)

    assert rate_limited
    assert all(h["retry-after-ms"] == "5" and h["Retry-After"] == "2" for h in rate_limited)


# Exact replays, over sockets


async def raw_post(
    http: aiohttp.ClientSession, emulator: WhopEmulator, body: Any, headers: dict[str, str]
) -> tuple[int, CIMultiDict[str], bytes]:
    async with http.post(url(emulator), data=json.dumps(body).encode(), headers=headers) as got:
        return got.status, CIMultiDict(got.headers), await got.read()


@pytest.mark.parametrize("body", [VALID, {**VALID, "title": " "}, {**VALID, "color": "red"}])
async def test_a_replay_is_the_first_answer_byte_for_byte_plus_the_marker(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator, body: dict[str, Any]
) -> None:
    headers = {**AUTH, "Idempotency-Key": "k-exact"}

    first_status, first_headers, first_body = await raw_post(http, whop_emulator, body, headers)
    status, replay_headers, replay_body = await raw_post(http, whop_emulator, body, headers)

    assert (status, replay_body) == (first_status, first_body)
    assert "Idempotent-Replayed" not in first_headers
    assert replay_headers["Idempotent-Replayed"] == "true"
    for name in ("Content-Type", "Content-Length", "X-Request-Id"):
        assert replay_headers[name] == first_headers[name], name
    assert whop_emulator.status_counts == {first_status: 2}


# Connections: tracked by the emulator, dropped by closing their transport


async def test_close_connections_counts_each_open_connection_once(
    whop_emulator: WhopEmulator,
) -> None:
    async with aiohttp.ClientSession() as one, aiohttp.ClientSession() as two:
        await post(one, whop_emulator)
        await post(one, whop_emulator)  # the same keep-alive connection
        await post(two, whop_emulator)

        closed = whop_emulator.close_connections()
        again = whop_emulator.close_connections()

    assert (closed, again) == (2, 0)


async def test_after_close_connections_the_new_connection_is_tracked(
    whop_client: AsyncWhop, whop_emulator: WhopEmulator
) -> None:
    await whop_client.notifications.create(**VALID)
    assert whop_emulator.close_connections() == 1

    await whop_client.notifications.create(**VALID)  # the client retries on a new connection

    assert whop_emulator.close_connections() == 1


@pytest.mark.parametrize("fault", [Fault.DROP, Fault.ACCEPT_THEN_DROP, Fault.TRUNCATE])
async def test_a_dropped_connection_ends_its_handler_and_is_not_counted_as_open(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator, fault: Fault
) -> None:
    whop_emulator.script(ScriptedResponse(fault=fault))
    with pytest.raises(aiohttp.ClientError):
        await post(http, whop_emulator)

    status, _, _ = await post(http, whop_emulator)  # on a new connection

    assert status == 200
    assert whop_emulator.in_flight == 0
    assert whop_emulator.close_connections() == 1  # the live one only


async def test_stopping_closes_what_the_emulator_tracked(http: aiohttp.ClientSession) -> None:
    async with WhopEmulator() as server:
        await post(http, server)

    assert server.close_connections() == 0


# Api-Version-Date: the released values


def test_by_default_the_released_versions_and_api_version_exist() -> None:
    server = WhopEmulator()

    assert server.api_versions == RELEASED_API_VERSIONS | {API_VERSION}
    assert {"2025-01-01", "2026-09-22-3", "2026-10-15-1"} <= RELEASED_API_VERSIONS
    assert "2024-12-31" not in server.api_versions


def test_the_released_versions_are_the_ones_whop_sdk_lists() -> None:
    whop_sdk = pytest.importorskip("whop_sdk")
    from whop_sdk.types.api_key_api_version_date import ApiKeyApiVersionDate

    listed, _ = typing.get_args(ApiKeyApiVersionDate)
    sdk_default = inspect.signature(whop_sdk.AsyncWhop).parameters["api_version_date"].default

    assert set(typing.get_args(listed)) == RELEASED_API_VERSIONS
    assert sdk_default in RELEASED_API_VERSIONS


async def test_a_version_whop_never_released_gets_a_400_naming_the_supported_ones(
    http: aiohttp.ClientSession, whop_emulator: WhopEmulator
) -> None:
    headers = {**AUTH, "Api-Version-Date": "2024-12-31"}

    status, _, body = await post(http, whop_emulator, headers=headers)

    assert status == 400
    error = body["error"]
    assert (error["type"], error["code"]) == ("bad_request", "invalid_api_version")
    assert error["message"].startswith("Unknown Api-Version-Date: '2024-12-31'. Supported")
    assert all(version in error["message"] for version in RELEASED_API_VERSIONS)
    assert whop_emulator.notifications == []


async def test_a_test_can_add_versions_newer_than_the_list(http: aiohttp.ClientSession) -> None:
    async with WhopEmulator(api_versions=RELEASED_API_VERSIONS | {"2027-01-01"}) as server:
        newer = await post(http, server, headers={**AUTH, "Api-Version-Date": "2027-01-01"})
        later = await post(http, server, headers={**AUTH, "Api-Version-Date": "2027-02-01"})
        server.add_api_versions("2027-02-01")
        added = await post(http, server, headers={**AUTH, "Api-Version-Date": "2027-02-01"})

    assert (newer[0], later[0], added[0]) == (200, 400, 200)
    assert {"2027-01-01", "2027-02-01", "2026-08-21"} <= server.api_versions


# Whop's service, without sockets


SERVICE_KEY = {"Authorization": "Bearer sk"}
WITH_KEY = {**SERVICE_KEY, "Idempotency-Key": "k-1"}


def make_call(body: Any = None, headers: dict[str, str] | None = None, **options: Any) -> Call:
    encoded = json.dumps(VALID if body is None else body).encode()
    return Call(headers=SERVICE_KEY if headers is None else headers, body=encoded, **options)


def error_of(answer: Answer) -> dict[str, Any]:
    error: dict[str, Any] = answer.json()["error"]
    assert {"type", "message"} <= set(error) <= {"type", "code", "message", "param"}, error
    return error


def test_the_service_answers_a_valid_call_and_says_what_it_stored() -> None:
    answer = WhopService(api_key="sk").answer(make_call(headers=WITH_KEY), now=0.0)

    assert (answer.status, answer.body) == (200, b'{"success":true}')
    assert answer.headers["X-Request-Id"].startswith("req_")
    assert answer.notification is not None
    assert (answer.notification.body, answer.notification.idempotency_key) == (VALID, "k-1")


@pytest.mark.parametrize("body", [VALID, {**VALID, "content": ""}, [1]])
def test_the_service_replays_the_first_answer_byte_for_byte(body: Any) -> None:
    whop = WhopService(api_key="sk")

    first = whop.answer(make_call(body, WITH_KEY), now=0.0)
    replay = whop.answer(make_call(body, WITH_KEY), now=1.0)

    assert (replay.status, replay.body) == (first.status, first.body)
    assert replay.headers == {**first.headers, "Idempotent-Replayed": "true"}
    assert "Idempotent-Replayed" not in first.headers
    assert replay.notification is None


def test_the_service_holds_a_key_until_its_first_call_completes() -> None:
    whop = WhopService(api_key="sk")
    held = whop.admit(make_call(headers=WITH_KEY), now=0.0)
    assert isinstance(held, Admitted)

    during = whop.answer(make_call(headers=WITH_KEY), now=0.1)
    other = whop.answer(make_call({**VALID, "title": "Other"}, WITH_KEY), now=0.2)
    first = whop.complete(held)
    whop.release(held)
    after = whop.answer(make_call(headers=WITH_KEY), now=0.3)

    assert during.status == 409
    assert error_of(during)["type"] == "conflict"
    assert error_of(during)["code"] == "idempotency_request_in_progress"
    assert other.status == 400
    assert (error_of(other)["type"], error_of(other)["code"]) == (
        "bad_request",
        "idempotency_key_mismatch",
    )
    assert (after.body, after.headers["Idempotent-Replayed"]) == (first.body, "true")


def test_a_key_whose_call_never_completed_is_free_again() -> None:
    whop = WhopService(api_key="sk")
    held = whop.admit(make_call(headers=WITH_KEY), now=0.0)
    assert isinstance(held, Admitted)

    whop.release(held)
    again = whop.answer(make_call(headers=WITH_KEY), now=1.0)

    assert again.status == 200
    assert again.notification is not None


def test_the_service_limits_on_the_time_it_is_given() -> None:
    whop = WhopService(api_key="sk", limiter=FixedWindow(RateLimit(2, per=60.0)))

    statuses = [whop.answer(make_call(), now=now).status for now in (0.0, 1.0)]
    refused = whop.answer(make_call(), now=50.0)
    next_window = whop.answer(make_call(), now=60.0)

    assert statuses == [200, 200]
    assert refused.status == 429
    assert refused.json() == {
        "error": {"type": "rate_limit_exceeded", "message": "Try again in 10 seconds."}
    }
    assert "Retry-After" not in refused.headers
    assert next_window.status == 200


def test_the_service_replays_for_the_ttl_on_the_time_it_is_given() -> None:
    whop = WhopService(api_key="sk", idempotency_ttl=10.0)

    whop.answer(make_call(headers=WITH_KEY), now=0.0)
    replay = whop.answer(make_call(headers=WITH_KEY), now=10.0)
    fresh = whop.answer(make_call(headers=WITH_KEY), now=10.5)

    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in fresh.headers
    assert fresh.notification is not None


@pytest.mark.parametrize(
    ("call", "status", "kind", "code", "param"),
    [
        (make_call(method="GET", headers={}), 404, "not_found", None, None),
        (make_call(headers={}), 401, "unauthorized", None, None),
        (make_call(headers={"authorization": "Bearer nope"}), 401, "unauthorized", None, None),
        (
            make_call(headers={**SERVICE_KEY, "api-version-date": "2024-12-31"}),
            400,
            "bad_request",
            "invalid_api_version",
            None,
        ),
        (
            make_call(headers={**SERVICE_KEY, "Idempotency-Key": "k" * 256}),
            400,
            "bad_request",
            "invalid_idempotency_key",
            None,
        ),
        (Call(headers=SERVICE_KEY, body=b"{"), 400, "bad_request", "invalid_json", None),
        (
            make_call({"account_id": "b", "content": "c"}),
            400,
            "bad_request",
            "parameter_missing",
            "title",
        ),
        (make_call({"title": "t", "content": "c"}), 400, "bad_request", "parameter_missing", None),
        (make_call({**VALID, "color": "red"}), 400, "bad_request", "parameter_invalid", "color"),
        (
            make_call({**VALID, "user_ids": "u"}),
            400,
            "bad_request",
            "parameter_invalid",
            "user_ids",
        ),
        (
            make_call({**VALID, "title": ""}),
            422,
            "unprocessable_entity",
            "parameter_invalid",
            "title",
        ),
    ],
)
def test_every_error_of_the_service_has_whops_shape(
    call: Call, status: int, kind: str, code: str | None, param: str | None
) -> None:
    answer = WhopService(api_key="sk").answer(call, now=0.0)

    assert answer.status == status
    assert answer.headers["Content-Type"] == "application/json"
    error = error_of(answer)
    assert (error["type"], error.get("code"), error.get("param")) == (kind, code, param)
    assert error["message"]
    assert answer.notification is None
