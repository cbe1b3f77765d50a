"""Whop's side of ``POST /notifications`` without sockets: a request and the time in, an answer out.

``WhopService`` is what the emulator serves. It knows nothing of aiohttp or the clock, so every
rule can be tested by calling it. It answers in this order (Whop documents each answer, not the
order in which it checks): an unknown route (404), the bearer key (401), the rate limit (429),
``Api-Version-Date`` (400), ``Idempotency-Key`` (a replay, 400 mismatch, 409 in progress), the
body (400, 422), and otherwise 200 ``{"success": true}`` with the notification it stored.

Handling takes two steps so that a server can make it take time with the key held: ``admit``
runs the checks and holds the request's key; ``complete`` validates the body, stores the
notification and keeps the answer for replays; ``release`` lets a key go whose handling never
completed. ``answer`` does the three at once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from typing import Final

import attrs
from multidict import CIMultiDict, CIMultiDictProxy

from ._limits import Limiter
from ._script import ReceivedNotification
from ._versions import default_api_versions, version_problem
from ._whop_rules import (
    API_VERSION_HEADER,
    Answer,
    Fingerprint,
    IdempotencyStore,
    KeyEntry,
    error_answer,
    request_id,
    validate_notification,
)

__all__ = ["IDEMPOTENCY_TTL", "NOTIFICATIONS_PATH", "Admitted", "Answer", "Call", "WhopService"]

NOTIFICATIONS_PATH: Final = "/api/v1/notifications"
#: How long Whop replays the first answer to an idempotency key: 24 hours.
IDEMPOTENCY_TTL: Final = 24 * 3600.0
_MAX_IDEMPOTENCY_KEY_LENGTH: Final = 255
_OPERATION: Final = "POST /notifications"


def _headers(headers: Mapping[str, str]) -> CIMultiDictProxy[str]:
    if isinstance(headers, CIMultiDictProxy):
        return headers
    return CIMultiDictProxy(CIMultiDict(headers))


@attrs.frozen(kw_only=True)
class Call:
    """One request as Whop sees it."""

    method: str = "POST"
    path: str = NOTIFICATIONS_PATH
    query: str = ""
    """The query string, without ``?``."""
    headers: CIMultiDictProxy[str] = attrs.field(factory=dict, converter=_headers)
    body: bytes = b""


@attrs.frozen
class Admitted:
    """A request past the checks, its idempotency key (if any) held until it completes."""

    call: Call
    key: str | None = None
    scope: tuple[str, str] = ("", "")
    entry: KeyEntry | None = None


class WhopService:
    """Whop's behaviour for ``POST /notifications``: authentication, the rate limit, versions,
    idempotency, validation.

    Args:
        api_key: The only bearer token accepted; ``None`` accepts any non-empty one.
        limiter: Counts requests per bearer token and operation; ``None`` for no limit.
        rate_limit_headers: Also send ``Retry-After`` with a 429, which Whop does not document.
        api_versions: The ``Api-Version-Date`` values that exist; ``None`` for the released
            ones and ``API_VERSION``.
        idempotency_ttl: Seconds a first answer is replayed to its key (Whop: 24 hours).
    """

    def __init__(
        self,
        *,
        api_key: str | None,
        limiter: Limiter | None = None,
        rate_limit_headers: bool = False,
        api_versions: Collection[str] | None = None,
        idempotency_ttl: float = IDEMPOTENCY_TTL,
    ) -> None:
        self.api_key = api_key
        self.limiter = limiter
        self.rate_limit_headers = rate_limit_headers
        self.api_versions = (
            default_api_versions() if api_versions is None else frozenset(api_versions)
        )
        self._keys = IdempotencyStore(idempotency_ttl)

    def reset(self) -> None:
        """Forget every idempotency key and its answer."""
        self._keys.clear()

    def answer(self, call: Call, now: float) -> Answer:
        """Whop's answer to ``call`` arriving at ``now`` (seconds on any monotonic clock)."""
        admitted = self.admit(call, now)
        if isinstance(admitted, Answer):
            return admitted
        try:
            return self.complete(admitted)
        finally:
            self.release(admitted)

    def admit(self, call: Call, now: float) -> Admitted | Answer:
        """Check the route, key, rate limit, version and idempotency key, and hold the key.

        Returns the answer when one of them decides it, else the admitted request to
        ``complete`` (or ``release``).
        """
        if (call.method, call.path) != ("POST", NOTIFICATIONS_PATH):
            return error_answer(404, f"No route for {call.method} {call.path}")
        scheme, _, token = call.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not token:
            return error_answer(401, "Missing bearer token")
        if self.api_key is not None and token != self.api_key:
            return error_answer(401, "Invalid API key")
        limited = self._rate_limited(token, now)
        if limited is not None:
            return limited
        version = call.headers.get(API_VERSION_HEADER)
        problem = None if version is None else version_problem(version, self.api_versions)
        if problem is not None:
            return error_answer(400, problem, "invalid_api_version")
        key = call.headers.get("Idempotency-Key")
        if key is None:
            return Admitted(call)
        if not 0 < len(key) <= _MAX_IDEMPOTENCY_KEY_LENGTH:
            return error_answer(
                400,
                f"Idempotency-Key must be 1 to {_MAX_IDEMPOTENCY_KEY_LENGTH} characters",
                "invalid_idempotency_key",
            )
        scope = (token, key)
        fingerprint = Fingerprint(call.method, call.path, call.query, call.body, version)
        entry = self._keys.begin(scope, fingerprint, now)
        if isinstance(entry, Answer):
            return entry
        return Admitted(call, key, scope, entry)

    def complete(self, admitted: Admitted) -> Answer:
        """Validate the body and store the notification; keep the answer for its key's replays."""
        answer = self._handle(admitted.call, admitted.key)
        if admitted.entry is not None:
            self._keys.finish(admitted.scope, admitted.entry, answer)
        return answer

    def release(self, admitted: Admitted) -> None:
        """Let the request's key go if it never completed (its handling raised or was cancelled)."""
        if admitted.entry is not None:
            self._keys.abandon(admitted.scope, admitted.entry)

    def _handle(self, call: Call, key: str | None) -> Answer:
        try:
            payload = json.loads(call.body)
        except ValueError:
            return error_answer(400, "Request body is not valid JSON", "invalid_json")
        problem = validate_notification(payload)
        if problem is not None:
            return error_answer(problem.status, problem.message, problem.code, param=problem.param)
        notification = ReceivedNotification(
            body=payload,
            headers=dict(call.headers),
            idempotency_key=key,
            api_version=call.headers.get(API_VERSION_HEADER),
        )
        headers = {"Content-Type": "application/json", "X-Request-Id": request_id()}
        return Answer(200, b'{"success":true}', headers, notification)

    def _rate_limited(self, token: str, now: float) -> Answer | None:
        """Whop's 429 when this credential is over its limit for the operation, else ``None``."""
        if self.limiter is None:
            return None
        wait = self.limiter.take(f"{token}\0{_OPERATION}", now)
        if wait is None:
            return None
        seconds = max(1, math.ceil(wait))
        return error_answer(
            429,
            f"Try again in {seconds} second{'s' if seconds != 1 else ''}.",
            headers={"Retry-After": str(seconds)} if self.rate_limit_headers else None,
        )
