"""``AsyncWhop``: the client, its configuration and its lifecycle."""

from __future__ import annotations

import functools
import ssl as ssl_module
from types import TracebackType
from typing import NoReturn, TypeVar

import aiohttp
import attrs
from yarl import URL

from ._config import (
    DEFAULT_BACKOFF,
    DEFAULT_CONNECTION_LIMIT,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    NOT_GIVEN,
    Backoff,
    ClientConfig,
    NotGiven,
    check_int,
    resolve_api_key,
    resolve_app_id,
    resolve_base_url,
)
from ._exceptions import InvalidParamsError
from ._notifications import NotificationsResource
from ._pool import Pool

__all__ = ["AsyncWhop"]

_ClientT = TypeVar("_ClientT", bound="AsyncWhop")


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
        timeout: Seconds one attempt may take, from taking a connection to the last byte of the
            response; ``None`` for no limit. Waiting for a free pooled connection is not counted.
        max_retries: Retries after the first attempt (0 for a single attempt).
        backoff: How long to wait between attempts; ``Backoff.instant()`` in tests.
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
        timeout: float | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff: Backoff = DEFAULT_BACKOFF,
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
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            max_response_bytes=max_response_bytes,
        )
        self._pool = Pool(session=session, connection_limit=connection_limit, ssl=ssl)
        self._owns_pool = True
        self._open = True

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
    def is_closed(self) -> bool:
        """True once ``close()`` was called on this client or the client it was derived from."""
        return self._pool.state == "closed" or not self._open

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
    ) -> _ClientT:
        """A client with other per-request settings that shares this one's connection pool.

        The copy borrows the pool: closing it does not close the pool; closing the original does.
        """
        changes: dict[str, object] = {}
        if not isinstance(timeout, NotGiven):
            changes["timeout"] = timeout
        if not isinstance(max_retries, NotGiven):
            changes["max_retries"] = max_retries
        if not isinstance(backoff, NotGiven):
            changes["backoff"] = backoff
        derived = object.__new__(type(self))
        derived._config = attrs.evolve(self._config, **changes)  # type: ignore[arg-type]
        derived._pool = self._pool
        derived._owns_pool = False
        derived._open = True
        return derived

    async def close(self) -> None:
        """Close the connection pool (unless it is borrowed). Safe to call more than once."""
        self._open = False
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
