"""A Whop API emulator: a real aiohttp.web server on loopback that speaks ``POST /notifications``.

It answers as Whop's pages say (401 without the right bearer key, 429 over Whop's documented
rate limit, 400 for an unknown ``Api-Version-Date`` or a bad body, 200 ``{"success": true}``
otherwise), honours ``Idempotency-Key`` as Whop does (replays, 400 ``idempotency_key_mismatch``,
409 ``idempotency_request_in_progress``; see ``_whop_rules.py``), records what it saw, and can
be told to misbehave: scripted responses, dropped connections, hangs, slow, truncated or
endless bodies, random faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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
from ._limits import Limiter, TokenBucket, Window, make_window, most_in_any_window
from ._script import Fault, RandomFaults, ReceivedNotification, ReceivedRequest, ScriptedResponse
from ._whop_rules import (
    API_VERSION_HEADER,
    Fingerprint,
    IdempotencyStore,
    api_version_problem,
    json_error,
    request_id,
    validate_notification,
)

__all__ = ["DEFAULT_API_KEY", "WHOP_RATE_LIMIT", "WhopEmulator"]

#: The key the emulator accepts unless told otherwise.
DEFAULT_API_KEY: Final = "whop_test_key"
#: Whop's documented limit: 600 requests per minute per API operation and credential.
WHOP_RATE_LIMIT: Final = RateLimit(600, per=60.0)
_OPERATION: Final = "POST /notifications"
#: An endless body stops after this many bytes even if the client never hangs up.
_ENDLESS_BODY_LIMIT: Final = 256 * 1024 * 1024
#: How long Whop replays the first answer to an idempotency key: 24 hours.
_IDEMPOTENCY_TTL: Final = 24 * 3600.0
#: Whop's longest idempotency key.
_MAX_IDEMPOTENCY_KEY_LENGTH: Final = 255


class WhopEmulator:
    """A running fake of Whop's notifications API on ``127.0.0.1`` and a free port.

    Use ``async with WhopEmulator() as server:`` and point a client at ``server.base_url`` with
    ``server.api_key``. Everything it accepted is in ``server.notifications``; everything it saw
    in ``server.requests``.

    Args:
        api_key: The only bearer token accepted; ``None`` accepts any non-empty one.
        rate_limit: Whop's limit, per bearer token and operation: 600 per 60 s by default (as
            documented); ``RateLimit(60, per=6.0)`` makes the same rate testable in seconds;
            ``None`` for no limit. Over it, the answer is Whop's documented 429,
            ``{"error": {"type": "rate_limit_exceeded", "message": "Try again in N seconds."}}``,
            with no ``Retry-After``. A refused request does not count.
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
            server). A request's idempotency key is held meanwhile: another request with the
            same key gets Whop's 409 ``idempotency_request_in_progress``.
        api_versions: The ``Api-Version-Date`` values that exist; others get a 400. ``None``
            (the default) accepts every well-formed one: a date, optionally with ``-N``
            (``2026-08-21``, ``2026-09-22-3``).
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
        idempotency_ttl: float = _IDEMPOTENCY_TTL,
    ) -> None:
        self.api_key = api_key
        self.rate_limit = rate_limit
        self.rate_limit_window = rate_limit_window
        self.rate_limit_headers = rate_limit_headers
        self._limiter: Limiter | None = None
        if token_bucket is not None:
            self._limiter = TokenBucket(token_bucket)
            self.rate_limit_headers = True
        elif rate_limit is not None:
            if not isinstance(rate_limit, RateLimit):
                raise TypeError(
                    f"rate_limit must be a RateLimit or None, got {type(rate_limit).__name__} "
                    "(token_bucket=N is the older per-second model)"
                )
            self._limiter = make_window(rate_limit, rate_limit_window)
        self.random_faults = random_faults
        self.record_requests = record_requests
        self.response_delay = response_delay
        self.api_versions = None if api_versions is None else frozenset(api_versions)
        self._ssl_context = ssl_context
        self._random = random.Random(random_faults.seed if random_faults else 0)
        self._script: deque[ScriptedResponse] = deque()
        self._idempotency = IdempotencyStore(idempotency_ttl)
        self._stopping: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self.requests: list[ReceivedRequest] = []
        self.notifications: list[ReceivedNotification] = []
        self.status_counts: dict[int | str, int] = {}
        self.request_count = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.port = 0

    # lifecycle

    @property
    def url(self) -> str:
        """The server's root, e.g. ``http://127.0.0.1:54321``."""
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What to pass as a client's ``base_url``."""
        return f"{self.url}/api/v1"

    async def start(self) -> None:
        """Bind a free port on 127.0.0.1 and start serving."""
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_post("/api/v1/notifications", self._handle_notification)
        app.router.add_route("*", "/{tail:.*}", self._handle_other)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock, ssl_context=self._ssl_context)
        await site.start()

    async def stop(self) -> None:
        """Release hanging handlers, close connections and free the port."""
        if self._stopping is not None:
            self._stopping.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

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
        body = kwargs.pop("body", {"error": {"message": f"Scripted failure ({status})"}})
        self.script(*(ScriptedResponse(status=status, body=body, **kwargs) for _ in range(count)))

    @property
    def pending_script(self) -> int:
        """How many scripted answers are still queued."""
        return len(self._script)

    def reset(self) -> None:
        """Forget recorded traffic, idempotency keys and their answers, and the script."""
        self._script.clear()
        self._idempotency.clear()
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
        if self._runner is None or self._runner.server is None:
            return 0
        closed = 0
        for handler in self._runner.server.connections:
            if handler.transport is not None and not handler.transport.is_closing():
                handler.transport.close()
                closed += 1
        return closed

    def busiest_window(self, per: float) -> int:
        """The most requests received in any ``per`` seconds (of those kept in ``requests``)."""
        return most_in_any_window((request.received_at for request in self.requests), per)

    def idempotency_keys(self) -> list[str | None]:
        """The idempotency key of each accepted notification, in arrival order."""
        return [notification.idempotency_key for notification in self.notifications]

    # handlers

    async def _handle_other(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        return self._count(
            json_error(404, f"No route for {request.method} {request.path}", "not_found")
        )

    async def _handle_notification(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            body = await self._record(request)
            return await self._answer(request, body)
        finally:
            self.in_flight -= 1

    async def _record(self, request: web.Request) -> bytes:
        body = await request.read()
        self.request_count += 1
        if self.record_requests:
            self.requests.append(
                ReceivedRequest(
                    method=request.method,
                    path=request.path,
                    headers=dict(request.headers),
                    body=body,
                    received_at=time.monotonic(),
                    api_version=request.headers.get(API_VERSION_HEADER),
                )
            )
        return body

    def _count(
        self, response: web.StreamResponse, key: int | str | None = None
    ) -> web.StreamResponse:
        label = response.status if key is None else key
        self.status_counts[label] = self.status_counts.get(label, 0) + 1
        return response

    async def _answer(self, request: web.Request, body: bytes) -> web.StreamResponse:
        if self._script:
            return await self._scripted(request, body, self._script.popleft())
        injected = self._draw_random_fault()
        if injected is not None:
            return await self._scripted(request, body, injected)
        return self._count(await self._serve(request, body, delay=self.response_delay))

    async def _serve(
        self, request: web.Request, body: bytes, *, delay: float = 0.0
    ) -> web.Response:
        """The real behaviour: authenticate, limit, check the version and the key, then handle.

        Handling (``delay`` seconds, then validating and storing) happens with the request's
        idempotency key held, and its answer, 2xx or 4xx, is kept for replays.
        """
        denied = self._authenticate(request)
        if denied is not None:
            return denied
        limited = self._rate_limited(request)
        if limited is not None:
            return limited
        version = request.headers.get(API_VERSION_HEADER)
        if version is not None:
            problem = api_version_problem(version, self.api_versions)
            if problem is not None:
                return json_error(400, problem, "invalid_api_version")
        key = request.headers.get("Idempotency-Key")
        if key is None:
            if delay:
                await self._sleep(delay)
            return self._handle(request, body, None)
        if not 0 < len(key) <= _MAX_IDEMPOTENCY_KEY_LENGTH:
            return json_error(
                400,
                f"Idempotency-Key must be 1 to {_MAX_IDEMPOTENCY_KEY_LENGTH} characters",
                "invalid_idempotency_key",
            )
        scope = (_bearer_token(request), key)
        fingerprint = Fingerprint(request.method, request.path, request.query_string, body, version)
        entry = self._idempotency.begin(scope, fingerprint, time.monotonic())
        if isinstance(entry, web.Response):
            return entry
        try:
            if delay:
                await self._sleep(delay)
            response = self._handle(request, body, key)
            self._idempotency.finish(scope, entry, response)
        finally:
            self._idempotency.abandon(scope, entry)
        return response

    def _handle(self, request: web.Request, body: bytes, key: str | None) -> web.Response:
        """Validate the body, and queue the notification it describes."""
        try:
            payload = json.loads(body)
        except ValueError:
            return json_error(400, "Request body is not valid JSON", "invalid_json")
        problem = validate_notification(payload)
        if problem is not None:
            return json_error(400 if problem[0] == "bad_request" else 422, problem[1], problem[0])
        self.notifications.append(
            ReceivedNotification(
                body=payload,
                headers=dict(request.headers),
                idempotency_key=key,
                api_version=request.headers.get(API_VERSION_HEADER),
            )
        )
        return web.Response(
            body=b'{"success":true}',
            content_type="application/json",
            headers={"X-Request-Id": request_id()},
        )

    def _authenticate(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or not token:
            return json_error(401, "Missing bearer token", "unauthorized")
        if self.api_key is not None and token != self.api_key:
            return json_error(401, "Invalid API key", "unauthorized")
        return None

    async def _scripted(
        self, request: web.Request, body: bytes, scripted: ScriptedResponse
    ) -> web.StreamResponse:
        if scripted.delay and scripted.fault is not Fault.SLOW_BODY:
            await self._sleep(scripted.delay)
        fault = scripted.fault
        if fault is Fault.HANG:
            await self._sleep(math.inf)
        if fault is Fault.ACCEPT_THEN_DROP:
            await self._serve(request, body)
        if fault in (Fault.DROP, Fault.ACCEPT_THEN_DROP, Fault.HANG):
            self._count(web.Response(status=599), key=fault.value)
            return _drop(request)
        raw, content_type = _encode(scripted.body, scripted.content_type)
        headers = {"Content-Type": content_type, **scripted.headers}
        self._count(web.Response(status=scripted.status), key=scripted.status)
        if fault is Fault.NONE:
            return web.Response(status=scripted.status, body=raw, headers=headers)
        response = web.StreamResponse(status=scripted.status, headers=headers)
        if fault is not Fault.ENDLESS_BODY:
            response.content_length = len(raw)
        await response.prepare(request)
        if fault is Fault.TRUNCATE:
            await response.write(raw[: len(raw) // 2])
            return _drop(request)
        if fault is Fault.ENDLESS_BODY:
            return await _write_endlessly(request, response, raw or b" ")
        for index in range(len(raw)):  # Fault.SLOW_BODY
            await response.write(raw[index : index + 1])
            await self._sleep(scripted.delay)
        await response.write_eof()
        return response

    def _draw_random_fault(self) -> ScriptedResponse | None:
        faults = self.random_faults
        if faults is None or self._random.random() >= faults.rate:
            return None
        kind = self._random.randrange(4 if faults.rate_limits else 3)
        if kind == 0:
            return ScriptedResponse(status=500, body={"error": {"message": "Injected 500"}})
        if kind == 1:
            return ScriptedResponse(fault=Fault.DROP)
        if kind == 2:
            return ScriptedResponse(fault=Fault.ACCEPT_THEN_DROP)
        headers = {"Retry-After": faults.retry_after}
        if faults.retry_after_ms is not None:
            headers["retry-after-ms"] = faults.retry_after_ms
        return ScriptedResponse(
            status=429, body={"error": {"message": "Injected rate limit"}}, headers=headers
        )

    def _rate_limited(self, request: web.Request) -> web.Response | None:
        """Whop's 429 when this credential is over its limit for the operation, else ``None``."""
        if self._limiter is None:
            return None
        wait = self._limiter.take(f"{_bearer_token(request)}\0{_OPERATION}", time.monotonic())
        if wait is None:
            return None
        seconds = max(1, math.ceil(wait))
        headers = {"Retry-After": str(seconds)} if self.rate_limit_headers else None
        return json_error(
            429,
            f"Try again in {seconds} second{'s' if seconds != 1 else ''}.",
            "rate_limit_exceeded",
            headers=headers,
        )

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the emulator stops, so shutdown never waits on a hang."""
        assert self._stopping is not None
        timeout = None if math.isinf(seconds) else seconds
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout)


def _bearer_token(request: web.Request) -> str:
    return request.headers.get("Authorization", "").partition(" ")[2]


def _drop(request: web.Request) -> web.StreamResponse:
    """Close the client's connection without (finishing) an answer."""
    transport = request.transport
    if transport is not None:
        transport.close()
    raise asyncio.CancelledError  # aiohttp treats a cancelled handler as a dropped connection


async def _write_endlessly(
    request: web.Request, response: web.StreamResponse, chunk: bytes
) -> web.StreamResponse:
    """Repeat ``chunk`` (grown to 64 KiB) until the client hangs up or the limit is reached."""
    chunk = chunk * max(1, 65536 // len(chunk))
    sent = 0
    with contextlib.suppress(ConnectionError):  # the client read enough and hung up
        while sent < _ENDLESS_BODY_LIMIT:
            await response.write(chunk)
            sent += len(chunk)
    return _drop(request)


def _encode(body: Any, content_type: str) -> tuple[bytes, str]:
    if isinstance(body, bytes):
        return body, content_type
    if isinstance(body, str):
        return body.encode(), content_type
    return json.dumps(body).encode(), "application/json"
