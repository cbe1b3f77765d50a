"""How Whop answers ``POST /notifications``: body validation and error bodies.

Kept apart from the server so the rules read as one page: which fields exist, what types they
take, and the JSON error shape (``{"error": {"type": ..., "message": ...}}``) with a request id.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from typing import Final

from aiohttp import web

__all__ = ["json_error", "request_id", "validate_notification"]

_NOTIFICATION_FIELDS: Final = {
    "company_id": "string",
    "experience_id": "string",
    "title": "string",
    "content": "string",
    "user_ids": "ids",
    "icon_user_id": "id",
    "subtitle": "string",
    "rest_path": "string",
}


def json_error(
    status: int, message: str, code: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps({"error": {"type": code, "message": message}}),
        content_type="application/json",
        headers={"X-Request-Id": request_id(), **(headers or {})},
    )


def request_id() -> str:
    return f"req_{random.getrandbits(64):016x}"


def validate_notification(payload: object) -> tuple[str, str] | None:
    """Check a body as Whop does: ``(code, message)`` for the first problem, else ``None``."""
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
    if (payload.get("company_id") is None) == (payload.get("experience_id") is None):
        return "bad_request", "Exactly one of company_id and experience_id is required"
    for name in ("title", "content"):
        if not payload[name].strip():
            return "unprocessable", f"{name} must not be empty"
    return None


def _is_id(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
