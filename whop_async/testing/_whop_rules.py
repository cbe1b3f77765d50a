"""How Whop answers ``POST /notifications``: the body, the version header, idempotency, errors.

Kept apart from the server so the rules read as one page, each as Whop's reference, versioning
and idempotency pages put it:

* the body: ``title`` and ``content``, exactly one audience (``account_id``, its older name
  ``company_id``, or ``experience_id``), optional ``user_ids``, ``icon_user_id``, ``subtitle``,
  ``rest_path``; any other field is a 400;
* ``Api-Version-Date``: an opaque string, but every version Whop has published is a date,
  optionally with a ``-N`` suffix (``2026-08-21``, ``2026-09-22-3``); an unknown one is a 400;
* ``Idempotency-Key`` (POST only, scoped to the caller): the first answer, 2xx or 4xx, is
  replayed for 24 h with ``Idempotent-Replayed: true``; the same key with another method, path,
  query, body or ``Api-Version-Date`` is a 400 ``idempotency_key_mismatch``; the same request
  while the first is still being handled is a 409 ``idempotency_request_in_progress``;
* errors: ``{"error": {"code": ..., "message": ...}}``, except the 429, which says ``"type"``.
"""

from __future__ import annotations

import datetime
import json
import random
import re
from collections.abc import Collection, Mapping
from typing import Final

import attrs
from aiohttp import web

__all__ = [
    "API_VERSION_HEADER",
    "Fingerprint",
    "IdempotencyStore",
    "KeyEntry",
    "Replay",
    "api_version_problem",
    "json_error",
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
_VERSION: Final = re.compile(r"(\d{4}-\d{2}-\d{2})(?:-\d+)?", re.ASCII)


def json_error(
    status: int, message: str, code: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    """An error in Whop's shape: ``{"error": {"code": ..., "message": ...}}``.

    A 429 names its kind ``"type"`` instead of ``"code"``, as Whop's rate-limit page shows.
    """
    kind = "type" if status == 429 else "code"
    return web.Response(
        status=status,
        text=json.dumps({"error": {kind: code, "message": message}}),
        content_type="application/json",
        headers={"X-Request-Id": request_id(), **(headers or {})},
    )


def request_id() -> str:
    return f"req_{random.getrandbits(64):016x}"


def api_version_problem(value: str, known: Collection[str] | None) -> str | None:
    """Why Whop would refuse this ``Api-Version-Date``, or ``None`` when it is acceptable.

    ``known`` lists the versions that exist; ``None`` accepts every well-formed one: a real
    calendar date, optionally followed by ``-N``.
    """
    match = _VERSION.fullmatch(value)
    well_formed = match is not None
    if match is not None:
        try:
            datetime.date.fromisoformat(match[1])
        except ValueError:
            well_formed = False
    if not well_formed or (known is not None and value not in known):
        return f"Unknown {API_VERSION_HEADER}: {value!r}"
    return None


def validate_notification(payload: object) -> tuple[str, str] | None:
    """Check a body as Whop does: ``(code, message)`` for the first problem, else ``None``.

    ``account_id`` and its older name ``company_id`` are both accepted, with or without
    ``Api-Version-Date``: Whop's pages do not say that either is refused under any version.
    """
    if not isinstance(payload, dict):
        return "bad_request", "Request body must be a JSON object"
    unknown = sorted(set(payload) - set(_NOTIFICATION_FIELDS))
    if unknown:
        return "bad_request", f"Unknown field: {unknown[0]}"
    for name in ("title", "content"):
        if name not in payload:
            return "bad_request", f"Missing required field: {name}"
    for name, kind in _NOTIFICATION_FIELDS.items():
        if name not in payload or (payload[name] is None and name not in ("title", "content")):
            continue
        value = payload[name]
        if kind == "string" and not isinstance(value, str):
            return "bad_request", f"{name} must be a string"
        if kind == "id" and not _is_id(value):
            return "bad_request", f"{name} must be an ID"
        if kind == "ids" and not (isinstance(value, list) and all(_is_id(v) for v in value)):
            return "bad_request", f"{name} must be a list of IDs"
    if sum(payload.get(name) is not None for name in _AUDIENCE_FIELDS) != 1:
        return (
            "bad_request",
            "Exactly one of experience_id or account_id (formerly company_id) is required",
        )
    for name in ("title", "content"):
        if not payload[name].strip():
            return "unprocessable", f"{name} must not be empty"
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


@attrs.frozen
class Replay:
    """A first answer kept for its key: replayed as it was, plus ``Idempotent-Replayed``."""

    status: int
    body: bytes
    content_type: str
    request_id: str | None

    def response(self) -> web.Response:
        headers = {"Idempotent-Replayed": "true"}
        if self.request_id is not None:
            headers["X-Request-Id"] = self.request_id
        return web.Response(
            status=self.status, body=self.body, content_type=self.content_type, headers=headers
        )


@attrs.define
class KeyEntry:
    """One key of one caller: its first request, and that request's answer once there is one."""

    fingerprint: Fingerprint
    started_at: float
    replay: Replay | None = None
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
    ) -> KeyEntry | web.Response:
        """A new entry to handle the request under, or the answer Whop gives without handling it.

        The answer is the replay of the first one, a 400 ``idempotency_key_mismatch`` for
        another request under the same key, or a 409 ``idempotency_request_in_progress``.
        """
        entry = self._entries.get(scope)
        if entry is not None and entry.replay is not None and now - entry.started_at > self.ttl:
            entry = None
        if entry is None:
            entry = self._entries[scope] = KeyEntry(fingerprint, now)
            return entry
        if entry.fingerprint != fingerprint:
            return json_error(
                400,
                "Idempotency-Key was reused with a different body, method, path, query or "
                f"{API_VERSION_HEADER}; use a new key for a new request.",
                "idempotency_key_mismatch",
            )
        if entry.replay is None:
            return json_error(
                409,
                "A request with this Idempotency-Key is still being processed; retry later.",
                "idempotency_request_in_progress",
            )
        return entry.replay.response()

    def finish(self, scope: tuple[str, str], entry: KeyEntry, response: web.Response) -> None:
        """Keep the answer for replays: the handler only gives 2xx and 4xx, the ones Whop keeps."""
        if self._entries.get(scope) is not entry:
            return  # forgotten by reset() meanwhile
        assert 200 <= response.status < 500, "a 5xx is never kept for replays"
        assert isinstance(response.body, bytes)
        entry.replay = Replay(
            status=response.status,
            body=response.body,
            content_type=response.content_type,
            request_id=response.headers.get("X-Request-Id"),
        )

    def abandon(self, scope: tuple[str, str], entry: KeyEntry) -> None:
        """Let the key go if its first request never got an answer."""
        if entry.replay is None and self._entries.get(scope) is entry:
            del self._entries[scope]
