"""Typed events for ``AsyncWhop(on_event=...)``: what each call did, as it does it.

One callback sees three kinds of event, each a frozen attrs class:

* ``AttemptEvent``: an HTTP attempt ended (its status or error, how long it took, Whop's
  request id);
* ``RetryEvent``: another attempt is scheduled (its delay and why);
* ``RateLimitWaitEvent``: the rate limiter held an attempt back (how long, and whether for its
  own window, a window shared through Redis, or a pause after a 429).

Events name the call by a hash of its idempotency key (``key_hash``), never the key itself, so
they can go to logs and metrics as they are. The callback runs in the event loop, synchronously:
keep it quick. An exception it raises is logged and does not change the call.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import TypeAlias

import attrs

from ._exceptions import APIError, APIStatusError
from ._observe import AttemptOutcome, CallInfo, CallObserver
from ._ratelimit import Permit, WaitKind

__all__ = [
    "AttemptEvent",
    "EventCallback",
    "EventEmitter",
    "RateLimitWaitEvent",
    "RetryEvent",
    "WhopEvent",
    "key_hash",
]

logger = logging.getLogger("whop_async")


def key_hash(idempotency_key: str) -> str:
    """16 hex digits of the key's SHA-256: tells calls apart without revealing their keys."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]


@attrs.frozen(kw_only=True)
class AttemptEvent:
    """One HTTP attempt of a call has ended."""

    operation: str
    """The API operation, e.g. ``"notifications.create"``."""
    method: str
    url: str
    attempt: int
    """Which attempt of the call, from 1."""
    status: int | None
    """The HTTP status, or ``None`` when no response arrived."""
    error: str | None
    """The class name of the error the attempt ended in (``"InternalServerError"``,
    ``"APITimeoutError"``), ``None`` for a success."""
    elapsed: float
    """Seconds on the wire, the rate limiter's wait excluded."""
    request_id: str | None
    """Whop's ``x-request-id``."""
    replayed: bool
    """True when Whop answered from the key's stored first answer."""
    key_hash: str
    """Identifies the call: a hash of its idempotency key."""


@attrs.frozen(kw_only=True)
class RetryEvent:
    """Another attempt of a call is scheduled."""

    operation: str
    attempt: int
    """The attempt that failed."""
    delay: float
    """Seconds until the next attempt."""
    reason: str
    """Why: ``"status 503"``, ``"rate limited (429)"``, ``"APITimeoutError"``, ..."""
    uses_retry: bool
    """False for a 429 waited out within ``max_rate_limit_wait``, which costs no retry."""
    key_hash: str


@attrs.frozen(kw_only=True)
class RateLimitWaitEvent:
    """The rate limiter held an attempt back before letting it go."""

    operation: str
    attempt: int
    seconds: float
    kind: WaitKind
    """``"local"`` (this process's window), ``"shared"`` (a window shared through Redis) or
    ``"pause"`` (everyone waits out a 429)."""
    key_hash: str


WhopEvent: TypeAlias = AttemptEvent | RetryEvent | RateLimitWaitEvent
#: What ``AsyncWhop(on_event=...)`` takes.
EventCallback: TypeAlias = Callable[[WhopEvent], object]


def _reason(error: APIError) -> str:
    if isinstance(error, APIStatusError):
        return "rate limited (429)" if error.status_code == 429 else f"status {error.status_code}"
    return type(error).__name__


class _CallEvents(CallObserver):
    """Turns one call's observations into events for the callback."""

    def __init__(self, callback: EventCallback, call: CallInfo) -> None:
        self._callback = callback
        self._call = call
        self._key_hash = key_hash(call.idempotency_key)

    def _emit(self, event: WhopEvent) -> None:
        try:
            self._callback(event)
        except Exception:
            logger.exception("The on_event callback raised on %r; the call goes on", event)

    def attempt_started(self, attempt: int, permit: Permit) -> None:
        if permit.waited and permit.wait_kind is not None:
            self._emit(
                RateLimitWaitEvent(
                    operation=self._call.operation,
                    attempt=attempt,
                    seconds=permit.waited,
                    kind=permit.wait_kind,
                    key_hash=self._key_hash,
                )
            )

    def attempt_ended(self, attempt: int, outcome: AttemptOutcome) -> None:
        self._emit(
            AttemptEvent(
                operation=self._call.operation,
                method=self._call.method,
                url=self._call.url,
                attempt=attempt,
                status=outcome.status,
                error=None if outcome.error is None else type(outcome.error).__name__,
                elapsed=outcome.elapsed,
                request_id=outcome.request_id,
                replayed=outcome.replayed,
                key_hash=self._key_hash,
            )
        )

    def retry_scheduled(
        self, attempt: int, delay: float, error: APIError, uses_retry: bool
    ) -> None:
        self._emit(
            RetryEvent(
                operation=self._call.operation,
                attempt=attempt,
                delay=delay,
                reason=_reason(error),
                uses_retry=uses_retry,
                key_hash=self._key_hash,
            )
        )


@attrs.frozen
class EventEmitter:
    """The observer factory behind ``on_event``: one ``_CallEvents`` per call."""

    callback: EventCallback

    def start_call(self, call: CallInfo) -> CallObserver:
        return _CallEvents(self.callback, call)
