"""Properties over large input spaces: what goes on the wire, what is refused, how long to wait.

The wire tests send every example through one real client to one emulator, both running in an
event loop this module controls (a client belongs to one loop, and a loop per example would mean
an emulator and a session per example too).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from whop_async import AsyncWhop, Backoff, InvalidParamsError, NotificationCreateParams
from whop_async._retry import parse_retry_after, retry_delay
from whop_async.testing import WhopEmulator

T = TypeVar("T")
KEY_FIELD_NAMES = ("company_id", "experience_id")


class Wire:
    """An emulator and a client bound to it, in a private event loop that examples run in."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_debug(True)
        self.server = WhopEmulator()
        self.run(self.server.start())
        self.client = AsyncWhop(
            self.server.api_key, base_url=self.server.base_url, backoff=Backoff.instant()
        )

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        self.run(self.client.close())
        self.run(self.server.stop())
        self.loop.close()


@pytest.fixture(scope="module")
def wire() -> Iterator[Wire]:
    wire = Wire()
    try:
        yield wire
    finally:
        wire.close()


# Text as users write it: any unicode but surrogates (which cannot be encoded), emoji included,
# sometimes very long; it must have something besides whitespace.
text = st.one_of(
    st.text(min_size=1, max_size=40),
    st.text(st.sampled_from("🎉🔥👩‍💻ü漢字\u200b\t\n\"\\/<>&'"), min_size=1, max_size=20),
    st.text(min_size=1, max_size=5).map(lambda s: s * 2_000),
).filter(lambda s: bool(s.strip()))
ids = st.one_of(text, st.integers(min_value=-(2**63), max_value=2**63))
audiences = st.sampled_from(KEY_FIELD_NAMES)


@st.composite
def valid_params(draw: st.DrawFn) -> dict[str, Any]:
    """``create()`` keywords for a valid notification; optional fields may be left out."""
    values: dict[str, Any] = {"title": draw(text), "content": draw(text)}
    values[draw(audiences)] = draw(text)
    for name, strategy in (
        ("user_ids", st.lists(ids, max_size=5)),
        ("icon_user_id", ids),
        ("subtitle", text),
        ("rest_path", text),
    ):
        if draw(st.booleans()):
            values[name] = draw(strategy)
    return values


def expected_json(values: dict[str, Any]) -> dict[str, Any]:
    """The body Whop's spec calls for, written out by hand rather than by the converter."""
    return {
        name: list(value) if name == "user_ids" else value
        for name, value in values.items()
        if name != "idempotency_key"
    }


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=valid_params())
@example(values={"title": "🎉", "content": "x", "company_id": "biz_1", "user_ids": []})
@example(values={"title": "t" * 100_000, "content": "漢字", "experience_id": "exp_1"})
def test_any_valid_notification_reaches_the_server_as_exactly_its_json(
    wire: Wire, values: dict[str, Any]
) -> None:
    before = len(wire.server.notifications)

    response = wire.run(wire.client.notifications.create(**values))

    assert response.success is True
    assert len(wire.server.notifications) == before + 1
    received = wire.server.requests[-1]
    assert json.loads(received.body) == expected_json(values)
    assert wire.server.notifications[-1].body == expected_json(values)
    assert received.headers["Content-Type"] == "application/json"


def _breaks_header(value: str) -> bool:
    return not value.isascii() or not value.isprintable()


blank = st.text(" \t\n\r\u00a0\u2003", max_size=5)
not_text = st.one_of(st.none(), st.integers(), st.floats(), st.lists(st.integers(), max_size=2))
not_text_or_none = not_text.filter(lambda value: value is not None)


@st.composite
def invalid_params(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """``create()`` keywords with exactly one problem, and the field the error must name."""
    values: dict[str, Any] = {"title": "t", "content": "c", "company_id": "biz_1"}
    problem = draw(
        st.sampled_from(
            [
                "blank",
                "not_text",
                "both_audiences",
                "no_audience",
                "user_ids_string",
                "bad_user_id",
                "bad_icon",
                "bad_key",
                "long_key",
            ]
        )
    )
    if problem == "blank":
        field = draw(st.sampled_from(["title", "content", "company_id", "subtitle", "rest_path"]))
        values[field] = draw(blank)
    elif problem == "not_text":
        field = draw(st.sampled_from(["title", "content", "subtitle", "rest_path"]))
        values[field] = draw(not_text if field in ("title", "content") else not_text_or_none)
    elif problem == "both_audiences":
        field, values["experience_id"] = "company_id", draw(text)
    elif problem == "no_audience":
        field = "account_id"  # the audience field Whop documents today
        del values["company_id"]
    elif problem == "user_ids_string":
        field, values["user_ids"] = "user_ids", draw(text)
    elif problem == "bad_user_id":
        bad = draw(st.one_of(st.booleans(), st.floats(), st.none(), blank))
        position = draw(st.integers(0, 3))
        values["user_ids"] = ["u"] * position + [bad]
        field = f"user_ids[{position}]"
    elif problem == "bad_icon":
        field, values["icon_user_id"] = "icon_user_id", draw(st.one_of(st.booleans(), blank))
    elif problem == "bad_key":
        field = "idempotency_key"
        values[field] = draw(st.text(min_size=1, max_size=20).filter(_breaks_header))
    else:
        field = "idempotency_key"
        values[field] = "k" * draw(st.integers(256, 2_000))
    return values, field


@settings(max_examples=50, deadline=None)
@given(case=invalid_params())
def test_any_invalid_notification_is_refused_before_io_naming_the_field(
    wire: Wire, case: tuple[dict[str, Any], str]
) -> None:
    values, field = case
    seen = wire.server.request_count

    with pytest.raises(InvalidParamsError) as caught:
        wire.run(wire.client.notifications.create(**values))

    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert wire.server.request_count == seen
    with pytest.raises(InvalidParamsError):
        NotificationCreateParams(**values)


# Retry-After and friends: any value a server (or a proxy) may put in those headers.
header_values = st.one_of(
    st.text(max_size=40),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers().map(str),
    st.sampled_from(
        ["Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", "-0", "1e999", ""]
    ),
)
header_names = st.sampled_from(["Retry-After", "retry-after", "RETRY-AFTER-MS", "retry-after-ms"])
backoffs = st.builds(
    Backoff,
    initial=st.floats(0, 100),
    maximum=st.floats(0, 100),
    jitter=st.floats(0, 1),
    max_retry_after=st.floats(0, 600),
)


@given(
    retries_done=st.integers(0, 100_000),
    headers=st.lists(st.tuples(header_names, header_values), max_size=4),
    backoff=backoffs,
)
def test_the_wait_before_a_retry_stays_within_its_bounds_for_any_header(
    retries_done: int, headers: list[tuple[str, str]], backoff: Backoff
) -> None:
    received = CIMultiDict(headers)  # what aiohttp hands over: names in any case

    hinted = parse_retry_after(received)
    delay = retry_delay(retries_done, received, backoff)

    assert hinted is None or (math.isfinite(hinted) and hinted > 0)
    assert math.isfinite(delay)
    cap = backoff.maximum if hinted is None else backoff.max_retry_after
    assert 0.0 <= delay <= cap
    if hinted is not None:
        assert delay == min(hinted, backoff.max_retry_after)
