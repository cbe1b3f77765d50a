"""The pure retry rules: which answers are retried, and how long to wait first."""

from __future__ import annotations

import email.utils
import math
import pickle
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from whop_async import (
    APIConnectionError,
    APITimeoutError,
    Backoff,
    BatchAbortedError,
    ClientClosedError,
    InvalidParamsError,
    WhopError,
    is_retryable,
)
from whop_async._exceptions import invalid_response, status_error
from whop_async._ratelimit import MIN_RATE_LIMIT_PAUSE
from whop_async._retry import (
    backoff_delay,
    parse_retry_after,
    rate_limit_delay,
    retry_delay,
    should_retry_status,
)

NOW = 1_700_000_000.0
NO_JITTER = Backoff(initial=0.5, maximum=8.0, jitter=0.0, max_retry_after=60.0)


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(NOW + seconds_from_now, usegmt=True)


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (408, True),
        (409, True),
        (418, False),
        (422, False),
        (429, True),
        (499, False),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (599, True),
    ],
)
def test_which_statuses_are_retried(status: int, retried: bool) -> None:
    assert should_retry_status(status, {}) is retried
    assert is_retryable(status_error(status, {}, b"")) is retried


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (status_error(503, {"x-should-retry": "false"}, b""), False),
        (status_error(400, {"x-should-retry": "true"}, b""), True),
        (APIConnectionError("Connection reset by peer"), True),
        (APIConnectionError("TLS error talking to 127.0.0.1", retryable=False), False),
        (APITimeoutError(), True),
        (invalid_response(200, {}, b"<html>", "not JSON"), False),
        (InvalidParamsError("title", "is required"), False),
        (ClientClosedError("closed"), False),
        (BatchAbortedError(), False),
        (ValueError("not the client's"), False),
    ],
)
def test_is_retryable_answers_for_every_kind_of_failure(error: Exception, retried: bool) -> None:
    assert is_retryable(error) is retried
    assert isinstance(error, WhopError) or not retried
    # The answer survives a trip to another process, as a task queue's result takes.
    assert is_retryable(pickle.loads(pickle.dumps(error))) is retried  # noqa: S301


@pytest.mark.parametrize("status", [400, 404, 500, 503])
def test_the_server_can_force_or_forbid_a_retry(status: int) -> None:
    assert should_retry_status(status, {"x-should-retry": "true"}) is True
    assert should_retry_status(status, {"x-should-retry": "false"}) is False


def test_an_unknown_should_retry_value_is_ignored() -> None:
    assert should_retry_status(500, {"x-should-retry": "maybe"}) is True
    assert should_retry_status(400, {"x-should-retry": "TRUE"}) is False


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": " 20 "}, 0.02),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after": http_date(30)}, 30.0),
        ({"retry-after-ms": "100", "retry-after": "9"}, 0.1),
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
    ],
)
def test_a_usable_server_hint_is_read_in_seconds(headers: dict[str, str], seconds: float) -> None:
    assert parse_retry_after(headers, now=NOW) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"retry-after": "soon"},
        {"retry-after": ""},
        {"retry-after": "0"},
        {"retry-after": "-5"},
        {"retry-after": "nan"},
        {"retry-after": "inf"},
        {"retry-after": "1e400"},
        {"retry-after": http_date(-30)},
        {"retry-after": "Mon, 99 Foo 2024 99:99:99 GMT"},
        {"retry-after-ms": "-1"},
        {"retry-after-ms": "0"},
    ],
)
def test_an_unusable_server_hint_is_ignored(headers: dict[str, str]) -> None:
    assert parse_retry_after(headers, now=NOW) is None


def test_an_http_date_is_measured_from_the_real_clock_by_default() -> None:
    in_a_minute = datetime.now(timezone.utc) + timedelta(seconds=60)

    hinted = parse_retry_after({"retry-after": email.utils.format_datetime(in_a_minute, True)})

    assert hinted is not None
    assert 55 < hinted <= 60


def test_backoff_doubles_up_to_its_maximum() -> None:
    delays = [backoff_delay(retries_done, NO_JITTER) for retries_done in range(7)]

    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_backoff_survives_an_absurd_number_of_retries() -> None:
    assert backoff_delay(10_000, NO_JITTER) == 8.0


def test_jitter_only_ever_shortens_the_wait() -> None:
    backoff = Backoff(initial=1.0, maximum=1.0, jitter=0.5)

    delays = {backoff_delay(0, backoff) for _ in range(200)}

    assert all(0.5 <= delay <= 1.0 for delay in delays)
    assert len(delays) > 1


def test_instant_backoff_never_waits_even_when_asked() -> None:
    assert retry_delay(3, {"retry-after": "30"}, Backoff.instant()) == 0.0
    assert retry_delay(3, None, Backoff.instant()) == 0.0


def test_a_server_hint_wins_over_backoff_but_is_capped() -> None:
    capped = Backoff(initial=0.5, maximum=8.0, jitter=0.0, max_retry_after=10.0)

    assert retry_delay(0, {"retry-after": "3"}, capped) == 3.0
    assert retry_delay(0, {"retry-after": "3600"}, capped) == 10.0
    assert retry_delay(2, {"retry-after": "never"}, capped) == 2.0
    assert retry_delay(2, None, capped) == 2.0


@pytest.mark.parametrize(
    "options",
    [{"initial": -1}, {"maximum": float("nan")}, {"jitter": True}, {"max_retry_after": "1"}],
)
def test_backoff_settings_must_be_non_negative_numbers(options: dict[str, object]) -> None:
    with pytest.raises(InvalidParamsError, match=next(iter(options))):
        Backoff(**options)  # type: ignore[arg-type]


header_values = st.one_of(
    st.text(),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers().map(str),
    st.from_regex(
        r"\A[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{1,5} \d{1,2}:\d{1,2}:\d{1,2} [A-Z0-9+-]{1,5}\Z"
    ),
    st.datetimes(timezones=st.just(timezone.utc)).map(
        lambda moment: email.utils.format_datetime(moment, usegmt=True)
    ),
)
backoffs = st.builds(
    Backoff,
    initial=st.floats(0, 100),
    maximum=st.floats(0, 100),
    jitter=st.floats(0, 1),
    max_retry_after=st.floats(0, 600),
)


@given(
    retries_done=st.integers(0, 10_000),
    headers=st.dictionaries(
        st.sampled_from(["retry-after", "retry-after-ms", "x-should-retry"]), header_values
    ),
    backoff=backoffs,
)
@example(
    retries_done=0, headers={"retry-after": "Mon, 01 Jan 0000 00:00:00 GMT"}, backoff=NO_JITTER
)
@example(retries_done=0, headers={"retry-after-ms": "1e400"}, backoff=NO_JITTER)
def test_any_header_gives_a_wait_between_zero_and_the_cap(
    retries_done: int, headers: dict[str, str], backoff: Backoff
) -> None:
    delay = retry_delay(retries_done, headers, backoff)

    cap = backoff.maximum if parse_retry_after(headers) is None else backoff.max_retry_after
    assert math.isfinite(delay)
    assert 0.0 <= delay <= cap


@given(headers=st.dictionaries(st.text(), header_values), now=st.floats(-1e12, 1e12))
def test_parse_retry_after_never_raises_and_is_positive_when_it_answers(
    headers: dict[str, str], now: float
) -> None:
    hinted = parse_retry_after({key.lower(): value for key, value in headers.items()}, now=now)

    assert hinted is None or (math.isfinite(hinted) and hinted > 0)


# 429s in a row: the first waits what was asked, the rest back off at least as fast as a 5xx


def waits_in_a_row(asked: float | None, count: int, backoff: Backoff = NO_JITTER) -> list[float]:
    waits: list[float] = []
    for in_a_row in range(1, count + 1):
        previous = waits[-1] if waits else 0.0
        waits.append(rate_limit_delay(asked, in_a_row=in_a_row, previous=previous, backoff=backoff))
    return waits


def test_a_single_429_waits_what_was_asked_and_no_more() -> None:
    assert waits_in_a_row(0.2, 1) == [0.2]
    assert waits_in_a_row(0.001, 1) == [MIN_RATE_LIMIT_PAUSE]  # the floor of every pause
    assert waits_in_a_row(None, 1) == [0.5]  # nothing asked: the backoff's first wait


def test_429s_in_a_row_double_at_least_and_never_fall_behind_the_5xx_schedule() -> None:
    waits = waits_in_a_row(0.01, 9)

    assert waits == [0.05, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert all(wait >= backoff_delay(n, NO_JITTER) for n, wait in enumerate(waits[1:], 1))


def test_a_server_answering_only_429s_sees_a_handful_of_requests_a_minute() -> None:
    # Finding 2 of issue 16: with 10 ms waits one call sent 388 requests in 20 s.
    waits = waits_in_a_row(0.01, 100)
    moments = [sum(waits[:n]) for n in range(len(waits))]  # when each attempt is sent

    assert sum(moment < 60 for moment in moments) == 7
    assert sum(60 <= moment < 120 for moment in moments) == 1


def test_a_longer_wait_asked_mid_run_is_honoured() -> None:
    assert rate_limit_delay(30.0, in_a_row=3, previous=1.0, backoff=NO_JITTER) == 30.0


def test_instant_backoff_keeps_429s_at_the_minimum_pause() -> None:
    assert set(waits_in_a_row(0.01, 5, Backoff.instant())) == {MIN_RATE_LIMIT_PAUSE}
