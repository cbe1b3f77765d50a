"""One POST to Whop: the attempt, the retry loop, timeouts and logging.

This is the only module that touches aiohttp's request API. It returns the raw 2xx response or
raises the exception that names what went wrong (see ``_exceptions.py``). A *gate* lets a bulk
send take part in every attempt: wait for a shared rate-limit pause, share 429s across the batch
and count retries. A single call has no gate.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import NamedTuple, Protocol

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from ._config import ClientConfig
from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ClientClosedError,
    invalid_response,
    shorten,
    status_error,
)
from ._pool import Pool
from ._retry import retry_delay, should_retry_status

__all__ = ["Gate", "RawResponse", "parse_json_body", "post"]

logger = logging.getLogger("whop_async")


class RawResponse(NamedTuple):
    """A response read in full (a tuple: one is made per request)."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Gate(Protocol):
    """What a bulk send controls in, and learns from, each attempt of its items."""

    async def acquire(self) -> None:
        """Wait until the batch may send (a shared rate-limit pause, pacing); may raise to abort."""

    def release(self, status: int | None) -> None:
        """Learn how the attempt ended: a status, or ``None`` when no response arrived."""

    def rate_limited(self, delay: float) -> bool:
        """Pause the whole batch for ``delay`` seconds; True when the item should just try again."""

    def retrying(self) -> None:
        """Count one retry that uses the item's own budget."""


class _Truncated(Exception):
    """The response body was larger than the client reads."""


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """Read the body, refusing to hold more than ``limit`` bytes of it."""
    length = response.content_length
    # Content-Length counts compressed bytes: a small gzip body may inflate past the limit.
    if length is not None and length <= limit and not response.headers.get("Content-Encoding"):
        return await response.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            response.close()
            raise _Truncated(b"".join(chunks)[:limit])
    return b"".join(chunks)


async def _exchange(
    session: aiohttp.ClientSession,
    config: ClientConfig,
    url: URL,
    headers: Mapping[str, str],
    body: bytes,
) -> tuple[int, CIMultiDictProxy[str], bytes]:
    async with session.post(
        url,
        data=body,
        headers=headers,
        allow_redirects=False,
        timeout=config.aiohttp_timeout,
    ) as response:
        try:
            raw = await _read_capped(response, config.max_response_bytes)
        except _Truncated as exc:
            partial: bytes = exc.args[0]
            if 200 <= response.status < 300:
                raise invalid_response(
                    response.status,
                    response.headers,
                    partial,
                    f"a body larger than {config.max_response_bytes} bytes, not read in full",
                ) from None
            raw = partial
        return response.status, response.headers, raw


def _connection_error(exc: Exception) -> APIConnectionError:
    if isinstance(exc, asyncio.TimeoutError):
        return APITimeoutError("Request timed out: no complete response within the timeout.")
    detail = str(exc) or type(exc).__name__
    return APIConnectionError(f"Connection error: {type(exc).__name__}: {shorten(detail, 300)}")


async def _attempt(
    pool: Pool,
    loop: asyncio.AbstractEventLoop,
    config: ClientConfig,
    url: URL,
    headers: Mapping[str, str],
    body: bytes,
) -> RawResponse | APIConnectionError:
    """One attempt: the response, whatever its status, or the connection error to retry after."""
    session, slots = pool.acquire(loop)
    try:
        if slots is None:
            status, response_headers, raw = await _exchange(session, config, url, headers, body)
        else:
            await slots.acquire()
            try:
                status, response_headers, raw = await _exchange(session, config, url, headers, body)
            finally:
                slots.release()
    except aiohttp.ClientSSLError as exc:
        # A certificate that does not verify will not verify on the next attempt either.
        raise APIConnectionError(
            f"TLS error talking to {url.host}: {shorten(str(exc), 300)}. Check the "
            "certificate, or pass ssl=<ssl.SSLContext> to AsyncWhop for a private CA."
        ) from exc
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        error = _connection_error(exc)
        error.__cause__ = exc
        return error
    except RuntimeError as exc:
        if pool.session is None or pool.session.closed:
            raise ClientClosedError("The client was closed while a request was under way.") from exc
        raise
    return RawResponse(status, response_headers, raw)


async def post(
    config: ClientConfig,
    pool: Pool,
    url: URL,
    body: bytes,
    *,
    idempotency_key: str,
    gate: Gate | None = None,
) -> RawResponse:
    """POST ``body`` to ``url`` and return the 2xx response, retrying by Whop's rules.

    Every attempt carries the same ``Idempotency-Key``, so a retry after a lost response cannot
    create a second notification on a server that deduplicates.

    Raises:
        APIStatusError: a non-2xx response that is not retried, or still failing after retries.
        APIConnectionError: no response (``APITimeoutError`` when an attempt timed out).
        APIResponseValidationError: a 2xx body larger than ``config.max_response_bytes``.
        ClientClosedError: the client was closed, or is used from another event loop.
    """
    headers = {**config.headers, "Idempotency-Key": idempotency_key}
    # Once per call: on Python 3.11 and older every get_running_loop() is a getpid() system call.
    loop = asyncio.get_running_loop()
    retries_done = 0
    while True:
        if gate is None:
            started = loop.time()
            result = await _attempt(pool, loop, config, url, headers, body)
        else:
            await gate.acquire()  # a shared pause is not part of the attempt's time
            started = loop.time()
            result_or_none: RawResponse | APIConnectionError | None = None
            try:
                result = result_or_none = await _attempt(pool, loop, config, url, headers, body)
            finally:
                gate.release(
                    result_or_none.status if isinstance(result_or_none, RawResponse) else None
                )
        _log_attempt(url, result, retries_done, config.max_retries, loop.time() - started)
        error: APIStatusError | APIConnectionError
        if isinstance(result, RawResponse):
            if 200 <= result.status < 300:
                return result
            error = status_error(result.status, result.headers, result.body)
            retryable = should_retry_status(result.status, result.headers)
            hints: Mapping[str, str] | None = result.headers
            # In a batch a 429 pauses everyone and does not use this item's budget.
            if (
                result.status == 429
                and retryable
                and gate is not None
                and gate.rate_limited(retry_delay(retries_done, hints, config.backoff))
            ):
                continue
        else:
            error, retryable, hints = result, True, None
        if not retryable or retries_done >= config.max_retries:
            raise error
        delay = retry_delay(retries_done, hints, config.backoff)
        logger.info(
            "Retrying POST %s in %.3f s (retry %d of %d) after %s",
            url,
            delay,
            retries_done + 1,
            config.max_retries,
            _reason(error),
        )
        if gate is not None:
            gate.retrying()
        await asyncio.sleep(delay)
        retries_done += 1


def _reason(error: APIStatusError | APIConnectionError) -> str:
    if isinstance(error, APIStatusError):
        return f"status {error.status_code}"
    return str(error)


def _log_attempt(
    url: URL,
    result: RawResponse | APIConnectionError,
    retries_done: int,
    max_retries: int,
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
        "POST %s -> %s (attempt %d of %d, %.1f ms, request id %s)",
        url,
        outcome,
        retries_done + 1,
        max_retries + 1,
        elapsed * 1000,
        request_id,
    )


def parse_json_body(response: RawResponse) -> object:
    """Decode a 2xx JSON body, or raise ``APIResponseValidationError`` with the raw text."""
    try:
        return json.loads(response.body)
    except ValueError:
        raise invalid_response(
            response.status, response.headers, response.body, "a body that is not JSON"
        ) from None
