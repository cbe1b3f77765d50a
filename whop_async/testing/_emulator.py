"""A Whop API emulator: a real aiohttp.web server on loopback that speaks ``POST /notifications``.

This module is the server's lifecycle, its controls and what it records. Whop's behaviour
(401, 429, 400 for a version Whop never released or a bad body, idempotency, 200) is the
socket-free ``WhopService`` (``_service.py``, ``_whop_rules.py``); the trouble it can be told
to make (scripted answers, dropped connections, hangs, broken bodies, random faults) is
``_faults.py``. The emulator is an oracle: it shares nothing with the client's limiter.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import socket
import time
from collections import deque
from collections.abc import Collection
from types import TracebackType
from typing import Any, Final

from aiohttp import web

from .._ratelimit import RateLimit
from ._faults import Connections, draw_random_fault, fault_label, play, scripted_failure
from ._limits import Window, make_limiter, most_in_any_window
from ._script import RandomFaults, ReceivedNotification, ReceivedRequest, ScriptedResponse
from ._service import IDEMPOTENCY_TTL, NOTIFICATIONS_PATH, Answer, Call, WhopService
from ._whop_rules import API_VERSION_HEADER

__all__ = ["DEFAULT_API_KEY", "WHOP_RATE_LIMIT", "WhopEmulator"]

#: The key the emulator accepts unless told otherwise.
DEFAULT_API_KEY: Final = "whop_test_key"
#: Whop's documented limit: 600 requests per minute per API operation and credential.
WHOP_RATE_LIMIT: Final = RateLimit(600, per=60.0)


class WhopEmulator:
    """A running fake of Whop's notifications API on ``127.0.0.1`` and a free port.

    Use ``async with WhopEmulator() as server:`` and point a client at ``server.base_url`` with
    ``server.api_key``. Everything it accepted is in ``server.notifications``; everything it saw
    in ``server.requests``.

    Args:
        api_key: The only bearer token accepted; ``None`` accepts any non-empty one.
        rate_limit: Whop's limit per bearer token and operation, 600 per 60 s as documented;
            ``RateLimit(60, per=6.0)`` is the same rate, testable in seconds; ``None``: none.
            Over it comes Whop's 429, the wait in its message (``"Try again in N seconds."``)
            and no ``Retry-After``. A refused request does not count.
        rate_limit_window: ``"fixed"`` (windows of ``per`` seconds on the clock) or
            ``"sliding"`` (any ``per`` seconds); Whop does not say which it uses.
        rate_limit_headers: Also send ``Retry-After`` (whole seconds) with the 429, which Whop
            does not document.
        token_bucket: Instead of Whop's limit, the older model: this many requests a second,
            bursts of one second's worth, 429s with ``Retry-After``.
        random_faults: Inject faults into a random fraction of requests.
        record_requests: Keep every request in ``requests``; turn off for long soaks.
        ssl_context: Serve HTTPS with this context (for TLS tests).
        response_delay: Seconds the handling of every request takes (a slow but healthy
            server), its idempotency key held meanwhile: a request with the same key gets
            Whop's 409 ``idempotency_request_in_progress``.
        api_versions: The ``Api-Version-Date`` values that exist; others get Whop's 400. By
            default the released ones (``RELEASED_API_VERSIONS``) and ``API_VERSION``; newer
            ones with ``RELEASED_API_VERSIONS | {...}`` or ``add_api_versions()``.
        idempotency_ttl: Seconds a first answer is replayed to its key (Whop: 24 hours).

    Scripted answers and random faults stand in for trouble in front of Whop (a proxy, the
    network): they bypass its idempotency, neither holding a key nor being replayed, except
    that ``Fault.ACCEPT_THEN_DROP`` has the request handled normally before dropping it.
    """

    def __init__(
        self,
        *,
        api_key: str | None = DEFAULT_API_KEY,
        rate_limit: RateLimit | None = WHOP_RATE_LIMIT,
        rate_limit_window: Window = "fixed",
        rate_limit_headers: bool = False,
        token_bucket: float | None = None,
        random_faults: RandomFaults | None = None,
        record_requests: bool = True,
        ssl_context: Any = None,
        response_delay: float = 0.0,
        api_versions: Collection[str] | None = None,
        idempotency_ttl: float = IDEMPOTENCY_TTL,
    ) -> None:
        self.rate_limit = rate_limit
        self.rate_limit_window = rate_limit_window
        self.rate_limit_headers = rate_limit_headers or token_bucket is not None
        self._service = WhopService(
            api_key=api_key,
            limiter=make_limiter(rate_limit, rate_limit_window, token_bucket),
            rate_limit_headers=self.rate_limit_headers,
            api_versions=api_versions,
            idempotency_ttl=idempotency_ttl,
        )
        self.random_faults = random_faults
        self.record_requests = record_requests
        self.response_delay = response_delay
        self._ssl_context = ssl_context
        self._random = random.Random(random_faults.seed if random_faults else 0)
        self._script: deque[ScriptedResponse] = deque()
        self._connections = Connections()
        self._stopping: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self.requests: list[ReceivedRequest] = []
        self.notifications: list[ReceivedNotification] = []
        self.status_counts: dict[int | str, int] = {}
        self.request_count = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.port = 0

    @property
    def api_key(self) -> str | None:
        """The only bearer token accepted (``None``: any non-empty one)."""
        return self._service.api_key

    @api_key.setter
    def api_key(self, api_key: str | None) -> None:
        self._service.api_key = api_key

    @property
    def api_versions(self) -> frozenset[str]:
        """The ``Api-Version-Date`` values that exist; any other gets a 400."""
        return self._service.api_versions

    @api_versions.setter
    def api_versions(self, versions: Collection[str]) -> None:
        self._service.api_versions = frozenset(versions)

    @property
    def url(self) -> str:
        """The server's root, e.g. ``http://127.0.0.1:54321``."""
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What to pass as a client's ``base_url``."""
        return f"{self.url}/api/v1"

    # lifecycle

    async def start(self) -> None:
        """Bind a free port on 127.0.0.1 and start serving."""
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_post(NOTIFICATIONS_PATH, self._handle_notification)
        app.router.add_route("*", "/{tail:.*}", self._handle_other)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock, ssl_context=self._ssl_context).start()

    async def stop(self) -> None:
        """Release hanging handlers, close connections and free the port."""
        if self._stopping is not None:
            self._stopping.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        self._connections.close_all()

    async def __aenter__(self) -> WhopEmulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # control

    def script(self, *responses: ScriptedResponse) -> None:
        """Queue answers: each of the next requests gets the next one, then normal service."""
        self._script.extend(responses)

    def fail_next(self, count: int, *, status: int = 500, **kwargs: Any) -> None:
        """Answer the next ``count`` requests with ``status`` and an error body."""
        body = kwargs.pop("body", scripted_failure(status))
        self.script(*(ScriptedResponse(status=status, body=body, **kwargs) for _ in range(count)))

    @property
    def pending_script(self) -> int:
        """How many scripted answers are still queued."""
        return len(self._script)

    def add_api_versions(self, *versions: str) -> None:
        """Make newer ``Api-Version-Date`` values exist, e.g. one Whop released after this list."""
        self._service.api_versions |= frozenset(versions)

    def reset(self) -> None:
        """Forget recorded traffic, idempotency keys and their answers, and the script."""
        self._script.clear()
        self._service.reset()
        self.requests.clear()
        self.notifications.clear()
        self.status_counts.clear()
        self.request_count = 0
        self.peak_in_flight = self.in_flight

    def close_connections(self) -> int:
        """Close every open connection at once, idle keep-alive ones included; return how many.

        A client that pooled one of them finds it dead on its next request, as it would when a
        server or a load balancer times out idle connections.
        """
        return self._connections.close_all()

    # recording

    def busiest_window(self, per: float) -> int:
        """The most requests received in any ``per`` seconds (of those kept in ``requests``)."""
        return most_in_any_window((request.received_at for request in self.requests), per)

    def idempotency_keys(self) -> list[str | None]:
        """The idempotency key of each accepted notification, in arrival order."""
        return [notification.idempotency_key for notification in self.notifications]

    # handlers: aiohttp in, the service or a fault out

    async def _handle_other(self, request: web.Request) -> web.StreamResponse:
        call = await self._receive(request)
        return self._respond(self._service.answer(call, time.monotonic()))

    async def _handle_notification(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            call = await self._receive(request)
            scripted = (
                self._script.popleft()
                if self._script
                else draw_random_fault(self.random_faults, self._random)
            )
            if scripted is None:
                return self._respond(await self._serve(call, delay=self.response_delay))
            self._count(fault_label(scripted))
            return await play(
                request, scripted, sleep=self._sleep, accept=lambda: self._serve(call)
            )
        finally:
            self.in_flight -= 1

    async def _receive(self, request: web.Request) -> Call:
        """Read and record the request; remember its connection."""
        headers, body = request.headers, await request.read()
        self._connections.track(request.transport)
        self.request_count += 1
        if self.record_requests:
            version = headers.get(API_VERSION_HEADER)
            self.requests.append(
                ReceivedRequest(
                    request.method, request.path, dict(headers), body, time.monotonic(), version
                )
            )
        return Call(
            method=request.method,
            path=request.path,
            query=request.query_string,
            headers=headers,
            body=body,
        )

    async def _serve(self, call: Call, *, delay: float = 0.0) -> Answer:
        """Whop's answer; handling takes ``delay`` seconds with the request's key held."""
        admitted = self._service.admit(call, time.monotonic())
        if isinstance(admitted, Answer):
            return admitted
        try:
            if delay:
                await self._sleep(delay)
            answer = self._service.complete(admitted)
        finally:
            self._service.release(admitted)
        if answer.notification is not None:
            self.notifications.append(answer.notification)
        return answer

    def _respond(self, answer: Answer) -> web.Response:
        self._count(answer.status)
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)

    def _count(self, label: int | str) -> None:
        self.status_counts[label] = self.status_counts.get(label, 0) + 1

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the emulator stops, so shutdown never waits on a hang."""
        assert self._stopping is not None
        timeout = None if math.isinf(seconds) else seconds
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout)
