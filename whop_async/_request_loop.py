"""The request loop: one call, its attempts, the rate limiter, retries and observers.

Every call of every resource ends here, through ``AsyncWhop._request``. For each attempt the
loop asks the observers (``_observe.py``), takes one permit of the rate limiter (waiting there
is not part of the attempt's timeout), sends once (``_http.py``), tells the limiter and the
observers how it went, and decides: return the parsed 2xx, raise, or wait and go again with the
same ``Idempotency-Key``. What to retry and how long to wait are the pure rules of
``_retry.py``; time is read from the injected clock.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

import aiohttp
import attrs
from yarl import URL

from ._clock import Clock
from ._config import NOT_GIVEN, ClientConfig, NotGiven
from ._converter import load_json
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

__all__ = ["PreparedRequest", "RequestOptions", "run"]

_ModelT = TypeVar("_ModelT")

logger = logging.getLogger("whop_async")


@attrs.define(kw_only=True)
class RequestOptions(Generic[_ModelT]):
    """Everything one call asks of the client: what a resource method hands to ``_request``."""

    method: str
    path: str
    """Under the client's ``base_url``, e.g. ``"/notifications"``."""
    operation: str
    """The name observers see, e.g. ``"notifications.create"``."""
    body: object
    """A request model, serialized once by the converter."""
    cast_to: type[_ModelT]
    """The response model a 2xx is structured into."""
    idempotency_key: str | None = None
    """Sent with every attempt; a new random key when ``None``."""
    extra_headers: Mapping[str, str] | None = None
    extra_body: Mapping[str, Any] | None = None
    timeout: float | NotGiven | None = NOT_GIVEN
    max_rate_limit_wait: float | NotGiven = NOT_GIVEN


class PreparedRequest(NamedTuple):
    """One call, checked and serialized once: every attempt sends exactly these bytes."""

    call: CallInfo
    url: URL
    headers: Mapping[str, str]
    body: bytes
    cast_to: type[Any]
    timeout: aiohttp.ClientTimeout
    max_rate_limit_wait: float


async def run(
    request: PreparedRequest,
    *,
    config: ClientConfig,
    pool: Pool,
    limiter: RateLimiter,
    clock: Clock,
    observers: Sequence[CallObserver],
) -> Any:
    """Send ``request`` until it succeeds or may not be tried again; return its parsed 2xx.

    A 429 waits as the server asked (growing when 429s come in a row) without using a retry
    while the call's 429 waits stay within ``max_rate_limit_wait``. Every ``APIError`` raised
    carries the call's idempotency key.

    Raises:
        APIStatusError: a non-2xx response that is not retried, or still failing after retries.
        APIConnectionError: no response (``APITimeoutError`` when an attempt timed out).
        APIResponseValidationError: a 2xx body that is too large or not the documented shape.
        ClientClosedError: the client was closed, or is used from another event loop.
        WhopError: an observer ended the call before an attempt (a bulk send stopping).
    """
    key = request.call.idempotency_key
    response: Any = None
    failure: BaseException | None = None
    for observer in observers:
        observer.call_started(request.call)
    try:
        response = await _attempts(request, config, pool, limiter, clock, observers)
        return response
    except APIError as exc:
        exc.idempotency_key = key
        failure = exc
        raise
    except BaseException as exc:  # cancellation too: observers hear of every end
        failure = exc
        raise
    finally:
        for observer in observers:
            observer.call_ended(response, failure)


async def _attempts(
    request: PreparedRequest,
    config: ClientConfig,
    pool: Pool,
    limiter: RateLimiter,
    clock: Clock,
    observers: Sequence[CallObserver],
) -> Any:
    method, url = request.call.method, request.url
    attempt = 0
    retries_done = 0
    rate_limit_waited = 0.0
    in_a_row = 0  # 429s in an unbroken run
    delay = 0.0
    while True:
        attempt += 1
        hold = 0.0
        for observer in observers:
            hold = max(hold, observer.before_attempt(attempt))
        if hold > 0:
            await clock.sleep(hold)
        permit = await limiter.acquire(request.call.limiter_key)
        try:
            for observer in observers:
                observer.attempt_started(attempt, permit)
            if permit.waited:
                logger.debug(
                    "%s %s waited %.3f s for the rate limiter (%s)",
                    method,
                    url,
                    permit.waited,
                    permit.wait_kind,
                )
            started = clock.now()
            try:
                result = await send_once(
                    pool,
                    method=method,
                    url=url,
                    headers=request.headers,
                    body=request.body,
                    timeout=request.timeout,
                    proxy=config.proxy,
                    max_response_bytes=config.max_response_bytes,
                )
            except APIError as exc:  # one the next attempt would meet again: no retry
                failed = getattr(exc, "status_code", None)
                _tell(observers, attempt, failed, None, exc, clock.now() - started)
                raise
            elapsed = clock.now() - started
            error: APIError | None = None
            if isinstance(result, RawResponse):
                status = result.status
                if not 200 <= status < 300:
                    error = status_error(status, result.headers, result.body)
                asked = None
                if isinstance(error, APIStatusError) and status == 429:
                    asked = asked_wait(result.headers, config.backoff, message=error.message)
                permit.record(status, retry_after=asked)
            else:
                error = result
                permit.record(None)
        finally:
            await limiter.release(request.call.limiter_key, permit)

        if isinstance(result, RawResponse) and error is None:
            replayed = _replayed(result.headers)
            try:
                model = _parse(request, result, attempt, replayed)
            except APIError as exc:
                _tell(observers, attempt, result.status, result.headers, exc, elapsed)
                raise
            _tell(observers, attempt, result.status, result.headers, None, elapsed)
            _log_attempt(method, url, result, attempt, config, elapsed)
            return model

        assert isinstance(error, (APIStatusError, APIConnectionError))
        if isinstance(result, RawResponse):
            _tell(observers, attempt, result.status, result.headers, error, elapsed)
        else:
            _tell(observers, attempt, None, None, error, elapsed)
        _log_attempt(method, url, result, attempt, config, elapsed)
        # A connection error returned (not raised) by send_once is always worth another try.
        retryable = (
            should_retry_status(result.status, result.headers)
            if isinstance(result, RawResponse)
            else True
        )
        if isinstance(result, RawResponse) and result.status == 429:
            in_a_row += 1
            delay = rate_limit_delay(
                permit.retry_after, in_a_row=in_a_row, previous=delay, backoff=config.backoff
            )
            free = retryable and rate_limit_waited + delay <= request.max_rate_limit_wait
        else:
            in_a_row = 0
            headers = result.headers if isinstance(result, RawResponse) else None
            delay = retry_delay(retries_done, headers, config.backoff)
            free = False
        if free:
            rate_limit_waited += delay
            logger.info("Rate limited on %s %s: waiting %.3f s as Whop asked", method, url, delay)
        elif not retryable or retries_done >= config.max_retries:
            raise error
        else:
            retries_done += 1
            logger.info(
                "Retrying %s %s in %.3f s (retry %d of %d) after %s",
                method,
                url,
                delay,
                retries_done,
                config.max_retries,
                _reason(error),
            )
        for observer in observers:
            observer.retry_scheduled(attempt, delay, error, not free)
        await clock.sleep(delay)


def _parse(request: PreparedRequest, result: RawResponse, attempts: int, replayed: bool) -> Any:
    """Structure a 2xx into ``cast_to``, with what the wire said about it, or say why not."""
    wire = {
        "request_id": result.headers.get("x-request-id"),
        "replayed": replayed,
        "idempotency_key": request.call.idempotency_key,
        "attempts": attempts,
    }
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


def _replayed(headers: Mapping[str, str]) -> bool:
    return headers.get("Idempotent-Replayed") == "true"


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
    if headers is None:
        outcome = AttemptOutcome(status, error, elapsed, None, False)
    else:
        request_id = headers.get("x-request-id")
        outcome = AttemptOutcome(status, error, elapsed, request_id, _replayed(headers))
    for observer in observers:
        observer.attempt_ended(attempt, outcome)


def _reason(error: APIStatusError | APIConnectionError) -> str:
    if isinstance(error, APIStatusError):
        return f"status {error.status_code}"
    return str(error)


def _log_attempt(
    method: str,
    url: URL,
    result: RawResponse | APIConnectionError,
    attempt: int,
    config: ClientConfig,
    elapsed: float,
) -> None:
    if not logger.isEnabledFor(logging.DEBUG):
        return
    if isinstance(result, RawResponse):
        outcome: object = result.status
        request_id = result.headers.get("x-request-id")
    else:
        outcome, request_id = type(result.__cause__).__name__, None
    logger.debug(
        "%s %s -> %s (attempt %d of %d, %.1f ms, request id %s)",
        method,
        url,
        outcome,
        attempt,
        config.max_retries + 1,
        elapsed * 1000,
        request_id,
    )
