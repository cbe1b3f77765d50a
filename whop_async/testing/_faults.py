"""Trouble in front of Whop, played by the emulator: scripted answers, dropped connections,
hangs, broken bodies, random faults, and closing every connection at once.

Only public aiohttp and asyncio means. A connection is dropped by closing the request's
transport (``request.transport``, then ``close()``); the handler then returns as usual, and
aiohttp's write to the closed transport fails with ``ConnectionResetError``, which it treats
as a peer that went away (aiohttp's docs, "Peer disconnection"). aiohttp has no public hook for
new connections, so ``Connections`` remembers the transport of each request it is shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from ._script import Fault, RandomFaults, ScriptedResponse
from ._whop_rules import error_type

__all__ = ["Connections", "draw_random_fault", "drop", "fault_label", "play", "scripted_failure"]

#: An endless body stops after this many bytes even if the client never hangs up.
_ENDLESS_BODY_LIMIT: Final = 256 * 1024 * 1024
_NO_ANSWER: Final = (Fault.DROP, Fault.ACCEPT_THEN_DROP, Fault.HANG)


class Connections:
    """The open connections that have carried a request, so that they can be closed at will."""

    def __init__(self) -> None:
        self._open: set[asyncio.BaseTransport] = set()

    def track(self, transport: asyncio.BaseTransport | None) -> None:
        """Remember a request's transport (forgetting the closed ones when a new one comes)."""
        if transport is None or transport in self._open or transport.is_closing():
            return
        self._open = {known for known in self._open if not known.is_closing()}
        self._open.add(transport)

    def close_all(self) -> int:
        """Close every open one, idle keep-alive connections included; return how many."""
        closing = [transport for transport in self._open if not transport.is_closing()]
        for transport in closing:
            transport.close()
        self._open.clear()
        return len(closing)


def drop(
    request: web.BaseRequest, response: web.StreamResponse | None = None
) -> web.StreamResponse:
    """Close the client's connection without (finishing) an answer; return what to return.

    aiohttp then fails to write ``response`` (or an empty one) and takes the client for gone.
    """
    if request.transport is not None:
        request.transport.close()
    return web.Response() if response is None else response


def fault_label(scripted: ScriptedResponse) -> int | str:
    """What ``status_counts`` counts a scripted answer under: its fault's name if no answer
    goes out, else its status."""
    return scripted.fault.value if scripted.fault in _NO_ANSWER else scripted.status


async def play(
    request: web.BaseRequest,
    scripted: ScriptedResponse,
    *,
    sleep: Callable[[float], Awaitable[None]],
    accept: Callable[[], Awaitable[object]],
) -> web.StreamResponse:
    """Answer ``request`` as ``scripted`` says: ``sleep`` waits (waking when the server stops),
    ``accept`` has Whop handle the request (for ``Fault.ACCEPT_THEN_DROP``)."""
    fault = scripted.fault
    if scripted.delay and fault is not Fault.SLOW_BODY:
        await sleep(scripted.delay)
    if fault is Fault.HANG:
        await sleep(math.inf)
    if fault is Fault.ACCEPT_THEN_DROP:
        await accept()
    if fault in _NO_ANSWER:
        return drop(request)
    raw, content_type = _encode(scripted.body, scripted.content_type)
    headers = {"Content-Type": content_type, **scripted.headers}
    if fault is Fault.NONE:
        return web.Response(status=scripted.status, body=raw, headers=headers)
    response = web.StreamResponse(status=scripted.status, headers=headers)
    if fault is not Fault.ENDLESS_BODY:
        response.content_length = len(raw)
    await response.prepare(request)
    if fault is Fault.TRUNCATE:
        await response.write(raw[: len(raw) // 2])
        return drop(request, response)
    if fault is Fault.ENDLESS_BODY:
        return await _write_endlessly(request, response, raw or b" ")
    for index in range(len(raw)):  # Fault.SLOW_BODY
        await response.write(raw[index : index + 1])
        await sleep(scripted.delay)
    await response.write_eof()
    return response


def draw_random_fault(faults: RandomFaults | None, draw: random.Random) -> ScriptedResponse | None:
    """A fault for one request, with probability ``faults.rate``, else ``None``."""
    if faults is None or draw.random() >= faults.rate:
        return None
    kind = draw.randrange(4 if faults.rate_limits else 3)
    if kind == 0:
        return ScriptedResponse(status=500, body=_error(500, "Injected 500"))
    if kind == 1:
        return ScriptedResponse(fault=Fault.DROP)
    if kind == 2:
        return ScriptedResponse(fault=Fault.ACCEPT_THEN_DROP)
    headers = {"Retry-After": faults.retry_after}
    if faults.retry_after_ms is not None:
        headers["retry-after-ms"] = faults.retry_after_ms
    return ScriptedResponse(status=429, body=_error(429, "Injected rate limit"), headers=headers)


def scripted_failure(status: int) -> dict[str, Any]:
    """The body ``fail_next`` sends unless given one: Whop's error shape."""
    return _error(status, f"Scripted failure ({status})")


def _error(status: int, message: str) -> dict[str, Any]:
    return {"error": {"type": error_type(status), "message": message}}


async def _write_endlessly(
    request: web.BaseRequest, response: web.StreamResponse, chunk: bytes
) -> web.StreamResponse:
    """Repeat ``chunk`` (grown to 64 KiB) until the client hangs up or the limit is reached."""
    chunk = chunk * max(1, 65536 // len(chunk))
    sent = 0
    with contextlib.suppress(ConnectionError):  # the client read enough and hung up
        while sent < _ENDLESS_BODY_LIMIT:
            await response.write(chunk)
            sent += len(chunk)
    return drop(request, response)


def _encode(body: Any, content_type: str) -> tuple[bytes, str]:
    if isinstance(body, bytes):
        return body, content_type
    if isinstance(body, str):
        return body.encode(), content_type
    return json.dumps(body).encode(), "application/json"
