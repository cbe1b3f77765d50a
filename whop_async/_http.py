"""One HTTP attempt over the pool: the only module that calls aiohttp's request API.

It sends a request once and reads its body in full (capped), whatever the status. What a
status means, and whether to try again, is the request loop's business (``_request_loop.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import NamedTuple

import aiohttp
from yarl import URL

from ._config import redact_url
from ._exceptions import (
    APIConnectionError,
    APITimeoutError,
    ClientClosedError,
    invalid_response,
    shorten,
)
from ._pool import Pool

__all__ = ["RawResponse", "send_once"]


class RawResponse(NamedTuple):
    """A response read in full."""

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


async def _read_to_limit(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """Read a body whose headers do not promise it fits in ``limit`` bytes, up to ``limit``.

    That is one without ``Content-Length``, a longer one, or a compressed one (Content-Length
    counts compressed bytes: a small gzip body may inflate past it). Past ``limit``, a 2xx is
    refused; any other status keeps what was read, for its error.
    """
    try:
        return await _read_capped(response, limit)
    except _Truncated as exc:
        raw: bytes = exc.args[0]
        if 200 <= response.status < 300:
            raise invalid_response(
                response.status,
                response.headers,
                raw,
                f"a body larger than {limit} bytes, not read in full",
            ) from None
        return raw


def _connection_error(exc: Exception) -> APIConnectionError:
    if isinstance(exc, asyncio.TimeoutError):
        error: APIConnectionError = APITimeoutError(
            "Request timed out: no complete response within the timeout."
        )
    else:
        detail = str(exc) or type(exc).__name__
        error = APIConnectionError(
            f"Connection error: {type(exc).__name__}: {shorten(detail, 300)}"
        )
    error.__cause__ = exc
    return error


async def send_once(
    pool: Pool,
    method: str,
    url: URL,
    headers: Mapping[str, str],
    body: bytes,
    timeout: aiohttp.ClientTimeout,
    proxy: URL | None,
    max_response_bytes: int,
) -> RawResponse | APIConnectionError:
    """Send one request and read its response, or return the connection error to retry after.

    The attempt's ``timeout`` starts once a pooled connection is free (see ``_pool.py``).

    Raises:
        APIConnectionError: a TLS failure, which the next attempt would meet again.
        APIResponseValidationError: a 2xx body larger than ``max_response_bytes``.
        ClientClosedError: the client was closed, or belongs to another event loop.
    """
    session, slots = pool.acquire(asyncio.get_running_loop())
    if not slots.take():
        await slots.wait()
    try:
        async with session.request(
            method,
            url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=timeout,
            proxy=proxy,
        ) as response:
            length = response.content_length
            if (
                length is not None
                and length <= max_response_bytes
                and not response.headers.get("Content-Encoding")
            ):
                raw = await response.read()
            else:
                raw = await _read_to_limit(response, max_response_bytes)
            return RawResponse(response.status, response.headers, raw)
    except aiohttp.ClientHttpProxyError as exc:
        # aiohttp's text names the proxy URL, password included: say it again without.
        shown = "the proxy" if proxy is None else f"the proxy {redact_url(proxy)}"
        error = APIConnectionError(
            f"Connection error: {shown} answered {exc.status} {exc.message!s} to the tunnel "
            f"to {url.host}" + (": check the proxy's credentials" if exc.status == 407 else ""),
            retryable=exc.status != 407,  # wrong or missing credentials stay wrong
        )
        if not error._retryable:
            raise error from None
        return error
    except aiohttp.ClientSSLError as exc:
        raise APIConnectionError(
            f"TLS error talking to {url.host}: {shorten(str(exc), 300)}. Check the "
            "certificate, or pass ssl=<ssl.SSLContext> to AsyncWhop for a private CA.",
            retryable=False,
        ) from exc
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return _connection_error(exc)
    except RuntimeError as exc:
        if pool.session is None or pool.session.closed:
            raise ClientClosedError("The client was closed while a request was under way.") from exc
        raise
    finally:
        slots.give()
