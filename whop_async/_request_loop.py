"""The request loop: the attempts of one call, the rate limiter, retries and observers.

Every call of every resource ends here, through ``AsyncWhop._request``. For each attempt the
loop asks the observers (``_observe.py``), takes one permit of the rate limiter (waiting there
is not part of the attempt's timeout), sends once (``_http.py``), tells the limiter and the
observers how it went, and decides: return the parsed 2xx, raise, or wait and go again with the
same ``Idempotency-Key``. What to retry and how long to wait are the pure rules of
``_retry.py``; time is read from the injected clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

import aiohttp
import attrs
from yarl import URL

from ._clock import Clock
from ._config import ClientConfig
from ._converter import load_json, wire_values
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    decode_body,
    invalid_response,
    status_error,
)
from ._http import RawResponse, send_once
from ._observe import AttemptOutcome, CallInfo, CallObserver
from ._pool import Pool
from ._ratelimit import RateLimiter
from ._retry import asked_wait, rate_limit_delay, retry_delay, should_retry_status

__all__ = ["Operation", "PreparedRequest", "RequestLoop"]

_ModelT = TypeVar("_ModelT")

logger = logging.getLogger("whop_async")


@attrs.frozen
class Operation(Generic[_ModelT]):
    """One API operation: what all of its calls share, defined once beside its resource."""

    name: str
    """The name observers see, e.g. ``"notifications.create"``."""
    method: str
    path: str
    """Under the client's ``base_url``, e.g. ``"/notifications"``."""
    cast_to: type[_ModelT]
    """The response model a 2xx is structured into."""
    limiter_key: str = attrs.field(init=False)
    """The rate limiter's name for it, e.g. ``"POST /notifications"``."""

    @limiter_key.default
    def _limiter_key(self) -> str:
        return f"{self.method} {self.path}"


class PreparedRequest(NamedTuple):
    """One call, checked and serialized once: the options the request loop runs it with.

    Every attempt sends exactly these bytes, with these headers (the idempotency key and a
    call's extra headers included).
    """

    call: CallInfo
    url: URL
    headers: Mapping[str, str]
    body: bytes
    cast_to: type[Any]
    timeout: aiohttp.ClientTimeout
    max_rate_limit_wait: float


class RequestLoop:
    """Runs the calls of one client: its settings, its pool, its rate limiter, its clock."""

    def __init__(
        self, config: ClientConfig, pool: Pool, limiter: RateLimiter, clock: Clock
    ) -> None:
        self._config = config
        self._pool = pool
        self._limiter = limiter
        self._clock = clock

    async def run(self, request: PreparedRequest, observers: Sequence[CallObserver]) -> Any:
        """Send ``request`` until it succeeds or may not be tried again; return its parsed 2xx.

        A 429 waits as the server asked (growing when 429s come in a row) without using a retry
        while the call's 429 waits stay within ``max_rate_limit_wait``. The observers hear of
        each attempt; the call's start and end are the caller's to tell (``AsyncWhop._request``).

        Raises:
            APIStatusError: a non-2xx answer not retried, or still failing after the retries.
            APIConnectionError: no response (``APITimeoutError`` when an attempt timed out).
            APIResponseValidationError: a 2xx body too large or not the documented shape.
            ClientClosedError: the client was closed, or is used from another event loop.
            WhopError: an observer ended the call before an attempt (a bulk send stopping).
        """
        config, clock, limiter = self._config, self._clock, self._limiter
        key = request.call.limiter_key
        debug = logger.isEnabledFor(logging.DEBUG)
        retries: _Retries | None = None  # made at the first failure: most calls have none
        attempt = 0
        while True:
            attempt += 1
            hold = 0.0
            for observer in observers:
                held = observer.before_attempt(attempt)
                if held > hold:
                    hold = held
            if hold > 0:
                await clock.sleep(hold)
            permit = await limiter.acquire(key)
            try:
                for observer in observers:
                    observer.attempt_started(attempt, permit)
                if debug and permit.waited:
                    logger.debug(
                        "%s waited %.3f s for the rate limiter (%s)",
                        request.call.url,
                        permit.waited,
                        permit.wait_kind,
                    )
                started = time.perf_counter()  # the wire's time, not the pacing clock's
                try:
                    result = await send_once(
                        self._pool,
                        request.call.method,
                        request.url,
                        request.headers,
                        request.body,
                        request.timeout,
                        config.proxy,
                        config.max_response_bytes,
                    )
                except APIError as exc:  # one the next attempt would meet again: no retry
                    status = getattr(exc, "status_code", None)
                    _tell(observers, attempt, status, None, exc, time.perf_counter() - started)
                    raise
                elapsed = time.perf_counter() - started
                error = _error_of(result)
                if isinstance(error, APIStatusError) and error.status_code == 429:
                    asked = asked_wait(error.headers, config.backoff, message=error.message)
                    permit.record(429, retry_after=asked)
                else:
                    permit.record(result.status if isinstance(result, RawResponse) else None)
            finally:
                await limiter.release(key, permit)

            if debug:
                _log_attempt(request, result, attempt, config, elapsed)
            if error is None:
                assert isinstance(result, RawResponse)
                replayed = result.headers.get("Idempotent-Replayed") == "true"
                try:
                    model = _parse(request, result, attempt, replayed)
                except APIError as exc:
                    _tell(observers, attempt, result.status, result.headers, exc, elapsed)
                    raise
                _tell(observers, attempt, result.status, result.headers, None, elapsed)
                return model
            if isinstance(result, RawResponse):
                _tell(observers, attempt, result.status, result.headers, error, elapsed)
            else:
                _tell(observers, attempt, None, None, error, elapsed)
            if retries is None:
                retries = _Retries(config, request.max_rate_limit_wait)
            delay, uses_retry = retries.after(error, permit.retry_after, request.call)
            for observer in observers:
                observer.retry_scheduled(attempt, delay, error, uses_retry)
            await clock.sleep(delay)


class _Retries:
    """One call's retry budget: decides, after each failed attempt, how long to wait first."""

    def __init__(self, config: ClientConfig, max_rate_limit_wait: float) -> None:
        self._config = config
        self._max_rate_limit_wait = max_rate_limit_wait
        self._retries_done = 0
        self._rate_limit_waited = 0.0
        self._in_a_row = 0  # 429s in an unbroken run
        self._delay = 0.0

    def after(
        self, error: APIStatusError | APIConnectionError, asked: float | None, call: CallInfo
    ) -> tuple[float, bool]:
        """``(delay, uses_retry)`` before the next attempt; raises ``error`` if there is none.

        A connection error that reaches here (not raised by the attempt) is worth another try.
        """
        config = self._config
        retryable = (
            should_retry_status(error.status_code, error.headers)
            if isinstance(error, APIStatusError)
            else True
        )
        if isinstance(error, APIStatusError) and error.status_code == 429:
            self._in_a_row += 1
            self._delay = rate_limit_delay(
                asked, in_a_row=self._in_a_row, previous=self._delay, backoff=config.backoff
            )
            if retryable and self._rate_limit_waited + self._delay <= self._max_rate_limit_wait:
                # Not this call's fault: wait as asked, without using one of its retries.
                self._rate_limit_waited += self._delay
                logger.info(
                    "Rate limited on %s %s: waiting %.3f s as Whop asked",
                    call.method,
                    call.url,
                    self._delay,
                )
                return self._delay, False
        else:
            self._in_a_row = 0
            headers = error.headers if isinstance(error, APIStatusError) else None
            self._delay = retry_delay(self._retries_done, headers, config.backoff)
        if not retryable or self._retries_done >= config.max_retries:
            raise error
        self._retries_done += 1
        logger.info(
            "Retrying %s %s in %.3f s (retry %d of %d) after %s",
            call.method,
            call.url,
            self._delay,
            self._retries_done,
            config.max_retries,
            _reason(error),
        )
        return self._delay, True


def _error_of(
    result: RawResponse | APIConnectionError,
) -> APIStatusError | APIConnectionError | None:
    """What an attempt failed with: ``None`` for a 2xx."""
    if not isinstance(result, RawResponse):
        return result
    if 200 <= result.status < 300:
        return None
    return status_error(result.status, result.headers, result.body)


def _parse(request: PreparedRequest, result: RawResponse, attempts: int, replayed: bool) -> Any:
    """Structure a 2xx into ``cast_to``, with what the wire said about it, or say why not."""
    wire = wire_values(
        request_id=result.headers.get("x-request-id"),
        replayed=replayed,
        idempotency_key=request.call.idempotency_key,
        attempts=attempts,
    )
    try:
        return load_json(result.body, request.cast_to, wire)
    except ValueError as exc:
        parsed, _ = decode_body(result.body)
        raise invalid_response(
            result.status,
            result.headers,
            result.body,
            str(exc),
            body=parsed if isinstance(parsed, (dict, list)) else None,
        ) from None


def _tell(
    observers: Sequence[CallObserver],
    attempt: int,
    status: int | None,
    headers: Mapping[str, str] | None,
    error: APIError | None,
    elapsed: float,
) -> None:
    """Tell the observers how an attempt ended."""
    if not observers:
        return
    outcome = AttemptOutcome(status, error, elapsed, headers)
    for observer in observers:
        observer.attempt_ended(attempt, outcome)


def _reason(error: APIStatusError | APIConnectionError) -> str:
    if isinstance(error, APIStatusError):
        return f"status {error.status_code}"
    return str(error)


def _log_attempt(
    request: PreparedRequest,
    result: RawResponse | APIConnectionError,
    attempt: int,
    config: ClientConfig,
    elapsed: float,
) -> None:
    if isinstance(result, RawResponse):
        outcome: object = result.status
        request_id = result.headers.get("x-request-id")
    else:
        outcome, request_id = type(result.__cause__).__name__, None
    logger.debug(
        "%s %s -> %s (attempt %d of %d, %.1f ms, request id %s)",
        request.call.method,
        request.call.url,
        outcome,
        attempt,
        config.max_retries + 1,
        elapsed * 1000,
        request_id,
    )
