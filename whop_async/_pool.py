"""The pooled ``aiohttp.ClientSession`` behind a client, and its lifecycle.

A pool is unopened until the first request, which creates the session inside the running loop
(so a client can be constructed anywhere, as hikari does); open until closed; closed for good
after that, as in httpx. A session passed in by the caller is borrowed: used as is, never closed.

The pool also hands out *slots*, one per connection the connector may hold. A request takes a
slot before its attempt's timeout starts, so an attempt is timed only while it has a connection
to use: a fan-out wider than the pool queues here instead of timing out in aiohttp's queue.
"""

from __future__ import annotations

import asyncio
import enum
import ssl as ssl_module
import sys
from collections import deque

import aiohttp

from ._exceptions import ClientClosedError

__all__ = ["Pool", "Slots"]


class Slots:
    """A first-come, first-served counting semaphore over the pool's connections.

    ``take()`` takes a free slot if there is one and says whether it did; only when there is
    none does the caller ``await wait()``, queued in order. An uncontended take is a plain
    call, where ``async with`` would make and run two coroutines (about 5k instructions of
    some 630k a request, ``benchmarks/instructions.py``, 2026-12-03). ``give()`` hands a slot
    straight to the longest waiter, so a free slot and a waiter never exist together and
    ``take()`` cannot jump the queue (``asyncio.Semaphore`` lets a newcomer take a slot a woken
    waiter was about to take, on Python 3.10).
    """

    def __init__(self, count: int) -> None:
        self._free = count
        self._waiters: deque[asyncio.Future[None]] = deque()

    def take(self) -> bool:
        """Take a free slot now; False when there is none (then ``await wait()``)."""
        if self._free:
            self._free -= 1
            return True
        return False

    async def wait(self) -> None:
        """Wait in line until ``give()`` hands this caller a slot."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if not waiter.cancelled():
                self.give()  # handed a slot just as it was cancelled: pass it on
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def give(self) -> None:
        """Return a slot: to the longest waiter still waiting, else to the free count."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class Pool:
    """One session, its connection slots, and the event loop they belong to."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None,
        connection_limit: int,
        ssl: ssl_module.SSLContext | bool,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._connection_limit = connection_limit
        self._ssl = ssl
        self._state = _State.UNOPENED
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: Slots | None = None

    @property
    def state(self) -> str:
        """``"unopened"``, ``"open"`` or ``"closed"``."""
        return self._state.value

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._state is _State.CLOSED

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The session, once opened (or borrowed)."""
        return self._session

    def acquire(self, loop: asyncio.AbstractEventLoop) -> tuple[aiohttp.ClientSession, Slots]:
        """Return the session and its slots, opening them in ``loop`` (the running one) at first.

        Raises:
            ClientClosedError: the pool was closed, or it belongs to another event loop.
        """
        if self._state is _State.OPEN and self._loop is loop:
            assert self._session is not None
            assert self._slots is not None
            if self._session.closed:
                raise ClientClosedError(
                    "The aiohttp session under this client was closed; create a new client."
                )
            return self._session, self._slots
        if self._state is _State.CLOSED:
            raise ClientClosedError(
                "This client has been closed; create a new AsyncWhop to send more requests."
            )
        if self._state is _State.OPEN:
            raise ClientClosedError(
                "This client is bound to another event loop; create one client per event loop."
            )
        return self._open(loop)

    def _open(self, loop: asyncio.AbstractEventLoop) -> tuple[aiohttp.ClientSession, Slots]:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._connection_limit, ssl=self._ssl)
            # No cookies: the API sets none we need, and the jar costs time on every request.
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar()
            )
        limit = self._session.connector.limit if self._session.connector is not None else 0
        self._slots = Slots(limit or sys.maxsize)
        self._loop = loop
        self._state = _State.OPEN
        return self._session, self._slots

    async def close(self) -> None:
        """Close the session if we own it; idempotent. A borrowed session is left open."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()
