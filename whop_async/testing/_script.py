"""What the emulator can be told to do, and what it records: the data of ``whop_async.testing``.

Frozen attrs classes: a ``ScriptedResponse`` (with its connection-level ``Fault``) is one answer
queued in place of the normal one; ``RandomFaults`` injects faults into a fraction of requests;
``ReceivedRequest`` and ``ReceivedNotification`` are what the emulator saw and accepted.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = [
    "Fault",
    "RandomFaults",
    "ReceivedNotification",
    "ReceivedRequest",
    "ScriptedResponse",
]


class Fault(enum.Enum):
    """How a scripted response misbehaves at the connection level."""

    NONE = "none"
    """Answer normally with the scripted status, headers and body."""
    DROP = "drop"
    """Close the connection without answering; the notification is not stored."""
    ACCEPT_THEN_DROP = "accept_then_drop"
    """Store the notification (as if queued), then close without answering."""
    HANG = "hang"
    """Never answer; the client's timeout has to end it."""
    TRUNCATE = "truncate"
    """Send the headers and half the body, announcing its full length, then close."""
    SLOW_BODY = "slow_body"
    """Send the headers at once, then the body one byte per ``delay`` seconds."""
    ENDLESS_BODY = "endless_body"
    """Send the headers, then the body over and over (no declared length) until the client
    hangs up: a body far larger than any client should read."""


@attrs.frozen(kw_only=True)
class ScriptedResponse:
    """One answer the emulator gives instead of its normal behaviour, in the order queued."""

    status: int = 200
    """The HTTP status."""
    body: Any = attrs.field(factory=lambda: {"success": True})
    """JSON-able data, or ``bytes``/``str`` sent as they are."""
    headers: Mapping[str, str] = attrs.field(factory=dict)
    """Extra response headers, e.g. ``{"Retry-After": "1"}``."""
    delay: float = 0.0
    """Seconds to wait before answering (before the headers: a slow server)."""
    fault: Fault = Fault.NONE
    """A connection-level misbehaviour."""
    content_type: str = "application/json"
    """The ``Content-Type`` of a ``bytes``/``str`` body."""


@attrs.frozen(kw_only=True)
class RandomFaults:
    """Faults injected at random into a fraction of requests (for soak tests).

    Each request draws once: with probability ``rate`` it meets one of the faults, chosen
    uniformly: a 500, a dropped connection, a stored-then-dropped one, or a 429 with Retry-After.
    """

    rate: float = 0.05
    """The fraction of requests that meet a fault."""
    seed: int = 0
    """Seeds the draws, so a run can be repeated."""
    retry_after: str = "1"
    """The ``Retry-After`` of an injected 429."""
    retry_after_ms: str | None = None
    """Also send ``retry-after-ms`` with an injected 429 (clients read it first): short soaks."""
    rate_limits: bool = True
    """Whether 429s are among the faults; without them the faults are the other three."""


@attrs.frozen
class ReceivedRequest:
    """A request the emulator saw, whatever it answered."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    received_at: float
    api_version: str | None = None
    """Its ``Api-Version-Date`` header, if it had one."""


@attrs.frozen
class ReceivedNotification:
    """A notification the emulator accepted (queued), once per idempotency key."""

    body: Mapping[str, Any]
    headers: Mapping[str, str]
    idempotency_key: str | None
    api_version: str | None = None
    """The ``Api-Version-Date`` it was sent with; ``None`` means Whop's 2025-01-01 behaviour."""
