"""``AsyncWhop``: the client, its configuration and its lifecycle."""

from __future__ import annotations

import functools
import ssl as ssl_module
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, NoReturn, TypeVar

import aiohttp
from yarl import URL

from ._config import (
    DEFAULT_BACKOFF,
    DEFAULT_CONNECTION_LIMIT,
    DEFAULT_MAX_RATE_LIMIT_WAIT,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    NOT_GIVEN,
    Backoff,
    ClientConfig,
    NotGiven,
    check_int,
    resolve_api_key,
    resolve_api_version,
    resolve_app_id,
    resolve_base_url,
)
from ._converter import dump_json, load_json
from ._exceptions import (
    ClientClosedError,
    InvalidParamsError,
    decode_body,
    invalid_response,
)
from ._keys import new_idempotency_key
from ._notifications import NotificationsResource
from ._pool import Pool
from ._ratelimit import DEFAULT_RATE_LIMIT, RateLimit, RateLimiter, make_limiter
from ._transport import RawResponse, request

__all__ = ["AsyncWhop"]

_ClientT = TypeVar("_ClientT", bound="AsyncWhop")
_ModelT = TypeVar("_ModelT")


class AsyncWhop:
    """An asyncio client for the Whop API, over one pooled ``aiohttp.ClientSession``.

    Use it as ``async with AsyncWhop() as client:``, or call ``await client.close()`` when done.
    The session is created on the first request, inside the running event loop, so the client
    itself can be built anywhere (at import time, in a synchronous factory).

    Args:
        api_key: The bearer token. Defaults to the ``WHOP_API_KEY`` environment variable; with
            neither, construction raises ``WhopError``.
        base_url: Defaults to ``WHOP_BASE_URL``, then ``https://api.whop.com/api/v1``.
        app_id: Sent as ``X-Whop-App-Id``. Defaults to ``WHOP_APP_ID``.
        api_version: Sent as ``Api-Version-Date`` on every request, pinning Whop's behaviour
            (``"2026-08-21"``). Defaults to ``WHOP_API_VERSION``; without either none is sent
            and Whop behaves as of 2025-01-01.
        timeout: Seconds one attempt may take, from taking a connection to the last byte of the
            response; ``None`` for no limit. Waiting for a free pooled connection, or for the
            rate limiter, is not counted.
        max_retries: Retries after the first attempt (0 for a single attempt).
        backoff: How long to wait between attempts; ``Backoff.instant()`` in tests.
        rate_limit: The client-side limit every request passes through, per API operation:
            Whop's documented ``RateLimit(600, per=60.0)`` by default; a ``RateLimiter`` (such
            as ``whop_async.redis.RedisRateLimiter``, shared by processes); ``None`` for none.
        max_rate_limit_wait: Seconds one call may spend waiting on 429s before they use its
            retries.
        connection_limit: Connections the pool may open at once.
        session: An ``aiohttp.ClientSession`` of yours to use as is; it is never closed by us.
        ssl: ``True`` to verify certificates (the default), or an ``ssl.SSLContext`` (a private
            CA, client certificates). Ignored when ``session`` is given.
        max_response_bytes: The most of a response body that is read.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | URL | None = None,
        app_id: str | None = None,
        api_version: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff: Backoff = DEFAULT_BACKOFF,
        rate_limit: RateLimit | RateLimiter | None = DEFAULT_RATE_LIMIT,
        max_rate_limit_wait: float = DEFAULT_MAX_RATE_LIMIT_WAIT,
        connection_limit: int = DEFAULT_CONNECTION_LIMIT,
        session: aiohttp.ClientSession | None = None,
        ssl: ssl_module.SSLContext | bool = True,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        check_int("connection_limit", connection_limit, minimum=1)
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise InvalidParamsError(
                "session", f"must be an aiohttp.ClientSession, got {type(session).__name__}"
            )
        if not isinstance(backoff, Backoff):
            raise InvalidParamsError("backoff", f"must be a Backoff, got {type(backoff).__name__}")
        self._config = ClientConfig(
            api_key=resolve_api_key(api_key),
            base_url=resolve_base_url(base_url),
            app_id=resolve_app_id(app_id),
            api_version=resolve_api_version(api_version),
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            max_rate_limit_wait=max_rate_limit_wait,
            max_response_bytes=max_response_bytes,
        )
        self._limiter = make_limiter(rate_limit)
        self._pool = Pool(
            session=session,
            connection_limit=connection_limit,
            ssl=ssl,
            headers=self._config.session_headers,
        )
        self._owns_pool = True
        self._closed = False
        self._routes: dict[tuple[str, str], tuple[URL, str]] = {}
        """``(method, path)`` -> the URL and the rate limiter's operation key, made once."""

    @functools.cached_property
    def notifications(self) -> NotificationsResource:
        """Send push notifications: ``await client.notifications.create(...)``."""
        return NotificationsResource(self)

    @property
    def base_url(self) -> URL:
        """The API root every request goes to."""
        return self._config.base_url

    @property
    def timeout(self) -> float | None:
        """Seconds one attempt may take."""
        return self._config.timeout

    @property
    def max_retries(self) -> int:
        """Retries after the first attempt."""
        return self._config.max_retries

    @property
    def api_version(self) -> str | None:
        """The ``Api-Version-Date`` sent with every request, if any."""
        return self._config.api_version

    @property
    def rate_limit(self) -> RateLimit | None:
        """The client-side rate limit per API operation; ``None`` when requests are not limited."""
        return self._limiter.limit

    @property
    def rate_limiter(self) -> RateLimiter:
        """The limiter every attempt of this client (and of its ``with_options`` copies) takes."""
        return self._limiter

    @property
    def is_closed(self) -> bool:
        """True once ``close()`` was called on this client or the client it was derived from."""
        return self._closed or self._pool.closed

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The pooled ``aiohttp.ClientSession``, once the first request has opened it."""
        return self._pool.session

    def with_options(
        self: _ClientT,
        *,
        timeout: float | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        backoff: Backoff | NotGiven = NOT_GIVEN,
        api_version: str | NotGiven | None = NOT_GIVEN,
        max_rate_limit_wait: float | NotGiven = NOT_GIVEN,
    ) -> _ClientT:
        """A client with other per-request settings that shares this one's pool and limiter.

        The copy borrows the pool: closing it does not close the pool; closing the original does.
        Its requests count against the same rate limit as the original's.
        """
        config = self._config
        if isinstance(api_version, NotGiven):
            api_version = config.api_version
        # "" stands for "none" without reading the environment again, as None would.
        derived = type(self)(
            config.api_key,
            base_url=config.base_url,
            app_id=config.app_id or "",
            api_version=api_version or "",
            timeout=config.timeout if isinstance(timeout, NotGiven) else timeout,
            max_retries=config.max_retries if isinstance(max_retries, NotGiven) else max_retries,
            backoff=config.backoff if isinstance(backoff, NotGiven) else backoff,
            rate_limit=self._limiter,
            max_rate_limit_wait=(
                config.max_rate_limit_wait
                if isinstance(max_rate_limit_wait, NotGiven)
                else max_rate_limit_wait
            ),
            max_response_bytes=config.max_response_bytes,
        )
        derived._pool = self._pool
        derived._owns_pool = False
        derived._closed = self._closed
        return derived

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: object,
        cast_to: type[_ModelT],
        idempotency_key: str | None = None,
        limiter: RateLimiter | None = None,
        max_rate_limit_wait: float | None = None,
    ) -> Coroutine[Any, Any, _ModelT]:
        """The one request path: every resource method is a few lines over this.

        Serializes ``body`` with the converter and returns the coroutine that sends it through
        the rate limiter and the retry loop with one idempotency key (``idempotency_key``, else
        a new one), and structures the 2xx response into ``cast_to``. Every ``APIError`` raised
        carries the key. Per call, ``limiter`` stands in for the client's own (a bulk send passes
        one that wraps it) and ``max_rate_limit_wait`` for the client's setting. Not itself a
        coroutine: a bulk send pays for every level of coroutine on every request. Bad input and
        a closed client raise here, before anything is sent.
        """
        if self.is_closed:
            raise ClientClosedError(
                "This client has been closed; create a new AsyncWhop to send more requests."
            )
        route = self._routes.get((method, path))
        if route is None:
            url = self._config.base_url / path.lstrip("/")
            route = self._routes[method, path] = (url, f"{method} {path}")
        url, operation = route
        return request(
            self._config,
            self._pool,
            self._limiter if limiter is None else limiter,
            method=method,
            url=url,
            operation=operation,
            body=dump_json(body),
            idempotency_key=idempotency_key or new_idempotency_key(),
            max_rate_limit_wait=(
                self._config.max_rate_limit_wait
                if max_rate_limit_wait is None
                else max_rate_limit_wait
            ),
            parse=functools.partial(_parse, cast_to),
        )

    async def close(self) -> None:
        """Close the connection pool (unless it is borrowed). Safe to call more than once.

        A limiter given as ``rate_limit`` is yours, and is left open.
        """
        self._closed = True
        if self._owns_pool:
            await self._pool.close()

    async def __aenter__(self: _ClientT) -> _ClientT:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __enter__(self) -> NoReturn:
        raise TypeError("AsyncWhop is async-only: use 'async with AsyncWhop() as client:'")

    def __exit__(self, *args: object) -> None:  # pragma: no cover - __enter__ always raises
        pass

    def __repr__(self) -> str:
        state = "closed" if self.is_closed else self._pool.state
        return f"<{type(self).__name__} base_url={str(self._config.base_url)!r} state={state}>"


def _parse(cast_to: type[_ModelT], response: RawResponse) -> _ModelT:
    """Structure a 2xx response into ``cast_to``, or say why it is not one."""
    try:
        return load_json(response.body, cast_to)
    except ValueError as exc:
        parsed, _ = decode_body(response.body)
        raise invalid_response(
            response.status,
            response.headers,
            response.body,
            str(exc),
            body=parsed if isinstance(parsed, (dict, list)) else None,
        ) from None
