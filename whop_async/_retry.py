"""When to retry an attempt, and how long to wait first.

The rules are those of Whop's Stainless-generated SDKs (``whop-sdk`` <= 0.0.41, ``@whop/sdk``
0.0.42): retry 408, 409, 429 and 5xx and connection failures; a server's
``x-should-retry: true|false`` overrides that; wait ``retry-after-ms``, else ``Retry-After``
(seconds or an HTTP date), else, for a 429, the wait in Whop's message ("Try again in 12
seconds."), else exponential backoff with jitter. A server hint that is negative, zero, in the
past or garbage falls back to backoff; a huge one is capped. These functions are pure so that
they can be tested exhaustively (see tests/test_retry.py).
"""

from __future__ import annotations

import email.utils
import math
import random
import re
import time
from collections.abc import Mapping

from ._config import Backoff
from ._exceptions import APIConnectionError, APIStatusError, OutcomeUnknownError
from ._ratelimit import pause_after_429

__all__ = [
    "asked_wait",
    "backoff_delay",
    "is_retryable",
    "parse_rate_limit_message",
    "parse_retry_after",
    "rate_limit_delay",
    "retry_delay",
    "should_retry_status",
]

_RETRYABLE_STATUSES = frozenset({408, 409, 429})
_TRY_AGAIN = re.compile(
    r"try again in\s+(\d+(?:\.\d+)?|\.\d+)\s*"
    r"(ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?)\b",
    re.IGNORECASE,
)


def should_retry_status(status: int, headers: Mapping[str, str]) -> bool:
    """Whether a response with this status and these headers is worth another attempt."""
    override = headers.get("x-should-retry")
    if override == "true":
        return True
    if override == "false":
        return False
    return status in _RETRYABLE_STATUSES or status >= 500


def is_retryable(error: BaseException) -> bool:
    """Whether the client retries a failure like ``error`` (when it has retries left).

    True for a connection failure or a timeout, except a TLS certificate that does not verify,
    for a status the client retries (408, 409, 429, 5xx; an ``x-should-retry`` header decides
    first), and for a bulk item whose outcome a cancellation left unknown. False for every
    other error, including those raised before or instead of a request. A retryable failure
    can be sent again later with the same idempotency key.
    """
    if isinstance(error, APIStatusError):
        return should_retry_status(error.status_code, error.headers)
    if isinstance(error, APIConnectionError):
        return error._retryable
    return isinstance(error, OutcomeUnknownError)


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """The wait a server asked for, in seconds, or ``None`` when it asked for nothing usable.

    Reads ``retry-after-ms`` first, then ``Retry-After`` as seconds (an integer or a float) or as
    an HTTP date. Values that are not finite and positive are ignored, so the caller backs off.
    """
    seconds: float | None = None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        seconds = _parse_float(milliseconds)
        if seconds is not None:
            seconds /= 1000
    if seconds is None:
        retry_after = headers.get("retry-after")
        if retry_after is not None:
            seconds = _parse_float(retry_after)
            if seconds is None:
                seconds = _parse_http_date(retry_after, now=now)
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        return None
    return seconds


def _parse_float(value: str) -> float | None:
    try:
        return float(value.strip())
    except ValueError:
        return None


def _parse_http_date(value: str, *, now: float | None) -> float | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if (
        parsed.tzinfo is None
    ):  # pragma: no cover - parsedate_to_datetime always sets one for RFC dates
        return None
    return parsed.timestamp() - (time.time() if now is None else now)


def backoff_delay(retries_done: int, backoff: Backoff) -> float:
    """The computed wait before retry number ``retries_done + 1``, jitter included."""
    exponent = min(retries_done, 62)  # 2**62 is already far past any maximum
    delay = min(backoff.initial * (2.0**exponent), backoff.maximum)
    if not backoff.jitter:
        return delay
    return max(0.0, delay * (1.0 - backoff.jitter * random.random()))


def parse_rate_limit_message(message: str | None) -> float | None:
    """The wait in Whop's 429 message (``"Try again in 12 seconds."``), in seconds, or ``None``.

    Whop documents no ``Retry-After`` for its rate limit: the wait is only in the message.
    """
    if not message:
        return None
    match = _TRY_AGAIN.search(message)
    if match is None:
        return None
    unit = match[2].lower()
    if unit.startswith(("ms", "milli")):
        scale = 0.001
    elif unit.startswith("m"):
        scale = 60.0
    else:
        scale = 1.0
    seconds = float(match[1]) * scale
    return seconds if math.isfinite(seconds) and seconds > 0 else None


def retry_delay(
    retries_done: int,
    headers: Mapping[str, str] | None,
    backoff: Backoff,
    *,
    message: str | None = None,
) -> float:
    """The wait before the next attempt: the server's hint (capped) when usable, else backoff.

    A header wins over the wait in a 429's ``message``; either is cut to
    ``backoff.max_retry_after``.
    """
    asked = asked_wait(headers, backoff, message=message)
    return backoff_delay(retries_done, backoff) if asked is None else asked


def asked_wait(
    headers: Mapping[str, str] | None, backoff: Backoff, *, message: str | None = None
) -> float | None:
    """The wait the server asked for, cut to ``backoff.max_retry_after``; ``None`` for none.

    ``retry-after-ms``, else ``Retry-After``, else the wait in a 429's ``message``.
    """
    hinted = parse_retry_after(headers) if headers is not None else None
    if hinted is None:
        hinted = parse_rate_limit_message(message)
    return None if hinted is None else min(hinted, backoff.max_retry_after)


def rate_limit_delay(
    asked: float | None, *, in_a_row: int, previous: float, backoff: Backoff
) -> float:
    """The wait after a 429, the ``in_a_row``-th of an unbroken run of 429s of one call.

    ``asked`` is the server's wait (``asked_wait``; ``None`` when it asked none) and
    ``previous`` the wait after the 429 before it in the run. The first 429 of a run waits what
    was asked (the backoff when nothing was; at least the minimum pause): scattered 429s cost
    their waits and no more. Each further 429 in a row
    waits at least twice the one before, and at least what a 5xx would wait at that point of
    the backoff schedule, up to ``backoff.max_retry_after``: a server that answers nothing but
    429s sees a handful of requests per call per minute, not hundreds.
    """
    pause = pause_after_429(backoff_delay(0, backoff) if asked is None else asked)
    if in_a_row <= 1:
        return pause
    grown = max(2.0 * previous, backoff.initial * 2.0 ** min(in_a_row - 1, 62))
    return max(pause, min(grown, backoff.max_retry_after))
