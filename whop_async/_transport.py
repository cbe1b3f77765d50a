"""One request to Whop: the attempt, the retry loop, timeouts and logging.

This is the only module that touches aiohttp's request API. It returns the raw 2xx response or
raises the exception that names what went wrong (see ``_exceptions.py``). Every attempt passes
through the client's rate limiter (``_ratelimit.py``), which a bulk send wraps with its own
pacing and counters: there is one path, whoever calls.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import NamedTuple, TypeVar

import aiohttp
from yarl import URL

from ._config import ClientConfig
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    ClientClosedError,
    invalid_response,
    shorten,
    status_error,
)
from ._pool import Pool
from ._ratelimit import MIN_RATE_LIMIT_PAUSE, RateLimiter
from ._retry import retry_delay, should_retry_status

__all__ = ["RawResponse", "request"]

_T = TypeVar("_T")

logger = logging.getLogger("whop_async")


class RawResponse(NamedTuple):
    """A response read in full (a tuple: one is made per request)."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class _Truncated(Exception):
    """The response body was larger than the client reads."""


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """Read a body of unknown or compressed size, refusing to hold more than ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            response.close()
            raise _Truncated(b"".join(chunks)[:limit])
    return b"".join(chunks)


def _connection_error(exc: Exception) -> APIConnectionError:
    if isinstance(exc, asyncio.TimeoutError):
        return APITimeoutError("Request timed out: no complete response within the timeout.")
    detail = str(exc) or type(exc).__name__
    return APIConnectionError(f"Connection error: {type(exc).__name__}: {shorten(detail, 300)}")


async def _attempt(
    pool: Pool,
    loop: asyncio.AbstractEventLoop,
    config: ClientConfig,
    method: str,
    url: URL,
    headers: Mapping[str, str],
    body: bytes,
) -> RawResponse | APIConnectionError:
    """One attempt: the response, whatever its status, or the connection error to retry after.

    One coroutine from the connection slot to the last byte: every level of coroutine is paid
    again each time the attempt waits on the network.
    """
    session, slots = pool.acquire(loop)
    limit = config.max_response_bytes
    if slots is not None and not slots.take():
        await slots.wait()
    try:
        async with session.request(
            method,
            url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=config.aiohttp_timeout,
        ) as response:
            length = response.content_length
            # Content-Length counts compressed bytes: a small gzip body may inflate past it.
            if (
                length is not None
                and length <= limit
                and not response.headers.get("Content-Encoding")
            ):
                raw = await response.read()
            else:
                try:
                    raw = await _read_capped(response, limit)
                except _Truncated as exc:
                    raw = exc.args[0]
                    if 200 <= response.status < 300:
                        raise invalid_response(
                            response.status,
                            response.headers,
                            raw,
                            f"a body larger than {limit} bytes, not read in full",
                        ) from None
            return RawResponse(response.status, response.headers, raw)
    except aiohttp.ClientSSLError as exc:
        # A certificate that does not verify will not verify on the next attempt either.
        raise APIConnectionError(
            f"TLS error talking to {url.host}: {shorten(str(exc), 300)}. Check the "
            "certificate, or pass ssl=<ssl.SSLContext> to AsyncWhop for a private CA.",
            retryable=False,
        ) from exc
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        error = _connection_error(exc)
        error.__cause__ = exc
        return error
    except RuntimeError as exc:
        if pool.session is None or pool.session.closed:
            raise ClientClosedError("The client was closed while a request was under way.") from exc
        raise
    finally:
        if slots is not None:
            slots.give()


async def request(
    config: ClientConfig,
    pool: Pool,
    limiter: RateLimiter,
    *,
    method: str,
    url: URL,
    operation: str,
    body: bytes,
    idempotency_key: str,
    max_rate_limit_wait: float,
    parse: Callable[[RawResponse], _T],
) -> _T:
    """Send one request, retrying by Whop's rules, and return ``parse`` of its 2xx response.

    Every attempt passes through ``limiter`` (waiting there is not part of its timeout) and
    carries the same ``Idempotency-Key``, so a retry after a lost response cannot create a second
    notification. A 429 waits as long as Whop asked (capped) and does not use a retry while the
    call's 429 waits stay within ``max_rate_limit_wait`` seconds. Every ``APIError`` raised,
    ``parse``'s included, carries the key as ``idempotency_key``. (Parsing happens here, not
    in the caller, so that a request is one coroutine fewer.)

    Raises:
        APIStatusError: a non-2xx response that is not retried, or still failing after retries.
        APIConnectionError: no response (``APITimeoutError`` when an attempt timed out).
        APIResponseValidationError: a 2xx body larger than ``config.max_response_bytes``, or
            one that ``parse`` refused.
        ClientClosedError: the client was closed, or is used from another event loop.
    """
    headers = {
        **(config.version_headers if pool.owns_session else config.headers),
        "Idempotency-Key": idempotency_key,
    }
    try:
        # Once per call: on Python 3.11 and older every get_running_loop() is a getpid() call.
        loop = asyncio.get_running_loop()
        debug = logger.isEnabledFor(logging.DEBUG)  # only debug lines time their attempts
        retries_done = 0
        rate_limit_waited = 0.0
        while True:
            # acquire/release rather than ``limiter.attempt()``: the same, without a context
            # manager's two coroutines on every attempt.
            permit = await limiter.acquire(operation)
            try:
                started = loop.time() if debug else 0.0
                result = await _attempt(pool, loop, config, method, url, headers, body)
                if isinstance(result, RawResponse):
                    if 200 <= result.status < 300:
                        permit.status = result.status
                        if debug:
                            _log_attempt(method, url, result, retries_done, config, started, loop)
                        return parse(result)
                    refused = status_error(result.status, result.headers, result.body)
                    error: APIStatusError | APIConnectionError = refused
                    retryable = should_retry_status(result.status, result.headers)
                    rate_limited = result.status == 429
                    delay = retry_delay(
                        retries_done,
                        result.headers,
                        config.backoff,
                        message=refused.message if rate_limited else None,
                    )
                    if rate_limited:
                        delay = max(delay, MIN_RATE_LIMIT_PAUSE)
                        permit.record(429, retry_after=delay)
                    else:
                        permit.record(result.status)
                else:
                    error, retryable, rate_limited = result, True, False
                    delay = retry_delay(retries_done, None, config.backoff)
                    permit.record(None)
            finally:
                await limiter.release(operation, permit)
            if debug:
                _log_attempt(method, url, result, retries_done, config, started, loop)
            if rate_limited and retryable and rate_limit_waited + delay <= max_rate_limit_wait:
                # Not this call's fault: wait as asked, without using one of its retries.
                rate_limit_waited += delay
                logger.info(
                    "Rate limited on %s %s: waiting %.3f s as Whop asked", method, url, delay
                )
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
            await asyncio.sleep(delay)
    except APIError as exc:
        exc.idempotency_key = idempotency_key
        raise


def _reason(error: APIStatusError | APIConnectionError) -> str:
    if isinstance(error, APIStatusError):
        return f"status {error.status_code}"
    return str(error)


def _log_attempt(
    method: str,
    url: URL,
    result: RawResponse | APIConnectionError,
    retries_done: int,
    config: ClientConfig,
    started: float,
    loop: asyncio.AbstractEventLoop,
) -> None:
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
        retries_done + 1,
        config.max_retries + 1,
        (loop.time() - started) * 1000,
        request_id,
    )
