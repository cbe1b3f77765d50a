"""How Whop answers ``POST /notifications``: the body, idempotency, the shape of its answers.

Kept apart from the server, and free of sockets, so the rules read as one page, each as Whop's
reference, versioning, idempotency and troubleshooting pages put it:

* the body: ``title`` and ``content``, exactly one audience (``account_id``, its older name
  ``company_id``, or ``experience_id``), optional ``user_ids``, ``icon_user_id``, ``subtitle``,
  ``rest_path``; any other field is a 400;
* ``Idempotency-Key`` (POST only, scoped to the caller): the first answer, 2xx or 4xx, is
  replayed for 24 h, "byte-for-byte identical to the original, including the status code", with
  ``Idempotent-Replayed: true``; the same key with another method, path, query, body or
  ``Api-Version-Date`` is a 400 ``idempotency_key_mismatch``; the same request while the first
  is still being handled is a 409 ``idempotency_request_in_progress``;
* errors: ``{"error": {"type": ..., "code": ..., "message": ...}}`` (the SDKs'
  ``V1ErrorResponse``): ``type`` always, the kind of error; ``code`` only for a specific refusal.

The types: Whop's troubleshooting page shows ``rate_limit_exceeded`` (429); whop-sdk 2.6.0
shows ``bad_request`` ("fails with a ``bad_request``"), ``forbidden`` ("answers ``403
forbidden``") and ``payment_required``: each names its status, and so do the others here. The
codes: Whop's idempotency page names ``idempotency_key_mismatch`` and
``idempotency_request_in_progress``, whop-sdk's error bodies ``parameter_missing``,
``parameter_invalid`` and ``invalid_json``; ``invalid_api_version`` and
``invalid_idempotency_key`` are the emulator's own, for refusals Whop gives no code for.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

import attrs

from ._script import ReceivedNotification

__all__ = [
    "API_VERSION_HEADER",
    "Answer",
    "Fingerprint",
    "IdempotencyStore",
    "KeyEntry",
    "Problem",
    "error_answer",
    "error_type",
    "request_id",
    "validate_notification",
]

API_VERSION_HEADER: Final = "Api-Version-Date"

_NOTIFICATION_FIELDS: Final = {
    "account_id": "string",
    "company_id": "string",
    "experience_id": "string",
    "title": "string",
    "content": "string",
    "user_ids": "ids",
    "icon_user_id": "id",
    "subtitle": "string",
    "rest_path": "string",
}
_AUDIENCE_FIELDS: Final = ("account_id", "company_id", "experience_id")
_ERROR_TYPES: Final = {
    400: "bad_request",
    401: "unauthorized",
    402: "payment_required",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    422: "unprocessable_entity",
    429: "rate_limit_exceeded",
    503: "service_unavailable",
}


@attrs.frozen
class Answer:
    """One answer as Whop gives it, before any socket: status, headers and body bytes."""

    status: int
    body: bytes
    headers: Mapping[str, str]
    notification: ReceivedNotification | None = None
    """The notification this answer stored (queued), if it stored one: never on a replay."""

    def json(self) -> Any:
        """The body, parsed."""
        return json.loads(self.body)

    def replayed(self) -> Answer:
        """This answer as a replay: the same status, headers and body, plus the marker."""
        headers = {**self.headers, "Idempotent-Replayed": "true"}
        return attrs.evolve(self, headers=headers, notification=None)


class Problem(NamedTuple):
    """What is wrong with a body: Whop's status, ``error.code``, message and ``error.param``."""

    status: int
    code: str
    message: str
    param: str | None = None


def error_type(status: int) -> str:
    """Whop's ``error.type`` for a status: its name, e.g. ``bad_request`` for 400."""
    return _ERROR_TYPES.get(status, "internal_server_error" if status >= 500 else "bad_request")


def error_answer(
    status: int,
    message: str,
    code: str | None = None,
    *,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """An error in Whop's shape: ``{"error": {"type", "code"?, "message", "param"?}}``.

    ``param``, the field at fault, is in whop-sdk's 400 and 422 bodies.
    """
    error = {"type": error_type(status), "code": code, "message": message, "param": param}
    error = {name: value for name, value in error.items() if value is not None}
    return Answer(
        status,
        json.dumps({"error": error}).encode(),
        {"Content-Type": "application/json", "X-Request-Id": request_id(), **(headers or {})},
    )


def request_id() -> str:
    return f"req_{random.getrandbits(64):016x}"


def validate_notification(payload: object) -> Problem | None:
    """Check a body as Whop does: the first problem, else ``None``.

    ``account_id`` and its older name ``company_id`` are both accepted, with or without
    ``Api-Version-Date``: Whop's pages do not say that either is refused under any version.
    """
    if not isinstance(payload, dict):
        return Problem(400, "invalid_json", "Request body must be a JSON object")
    unknown = sorted(set(payload) - set(_NOTIFICATION_FIELDS))
    if unknown:
        return Problem(400, "parameter_invalid", f"Unknown field: {unknown[0]}", unknown[0])
    for name in ("title", "content"):
        if name not in payload:
            return Problem(400, "parameter_missing", f"Missing required field: {name}", name)
    for name, kind in _NOTIFICATION_FIELDS.items():
        if name not in payload or (payload[name] is None and name not in ("title", "content")):
            continue
        value = payload[name]
        if kind == "string" and not isinstance(value, str):
            return Problem(400, "parameter_invalid", f"{name} must be a string", name)
        if kind == "id" and not _is_id(value):
            return Problem(400, "parameter_invalid", f"{name} must be an ID", name)
        if kind == "ids" and not (isinstance(value, list) and all(_is_id(v) for v in value)):
            return Problem(400, "parameter_invalid", f"{name} must be a list of IDs", name)
    audiences = sum(payload.get(name) is not None for name in _AUDIENCE_FIELDS)
    if audiences != 1:
        return Problem(
            400,
            "parameter_missing" if audiences == 0 else "parameter_invalid",
            "Exactly one of experience_id or account_id (formerly company_id) is required",
        )
    for name in ("title", "content"):
        if not payload[name].strip():
            return Problem(422, "parameter_invalid", f"{name} must not be empty", name)
    return None


def _is_id(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


# Idempotency


@attrs.frozen
class Fingerprint:
    """What makes two requests "the same request" for Whop's idempotency."""

    method: str
    path: str
    query: str
    body: bytes
    api_version: str | None


@attrs.define
class KeyEntry:
    """One key of one caller: its first request, and that request's answer once there is one."""

    fingerprint: Fingerprint
    started_at: float
    answer: Answer | None = None
    """``None`` while the first request is still being handled."""


class IdempotencyStore:
    """Keys per caller, their first request, and its answer (kept for ``ttl`` seconds).

    ``begin`` is called when a request with a key arrives, ``finish`` when its handling has an
    answer, ``abandon`` when its handling ended without one (it raised, or was cancelled).
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[tuple[str, str], KeyEntry] = {}

    def clear(self) -> None:
        self._entries.clear()

    def begin(
        self, scope: tuple[str, str], fingerprint: Fingerprint, now: float
    ) -> KeyEntry | Answer:
        """A new entry to handle the request under, or the answer Whop gives without handling it.

        The answer is the replay of the first one, a 400 ``idempotency_key_mismatch`` for
        another request under the same key, or a 409 ``idempotency_request_in_progress``.
        """
        entry = self._entries.get(scope)
        if entry is not None and entry.answer is not None and now - entry.started_at > self.ttl:
            entry = None
        if entry is None:
            entry = self._entries[scope] = KeyEntry(fingerprint, now)
            return entry
        if entry.fingerprint != fingerprint:
            return error_answer(
                400,
                "Idempotency-Key was reused with a different body, method, path, query or "
                f"{API_VERSION_HEADER}; use a new key for a new request.",
                "idempotency_key_mismatch",
            )
        if entry.answer is None:
            return error_answer(
                409,
                "A request with this Idempotency-Key is still being processed; retry later.",
                "idempotency_request_in_progress",
            )
        return entry.answer.replayed()

    def finish(self, scope: tuple[str, str], entry: KeyEntry, answer: Answer) -> None:
        """Keep the answer for replays: the handler only gives 2xx and 4xx, the ones Whop keeps."""
        if self._entries.get(scope) is not entry:
            return  # forgotten by reset() meanwhile
        assert 200 <= answer.status < 500, "a 5xx is never kept for replays"
        entry.answer = answer

    def abandon(self, scope: tuple[str, str], entry: KeyEntry) -> None:
        """Let the key go if its first request never got an answer."""
        if entry.answer is None and self._entries.get(scope) is entry:
            del self._entries[scope]
