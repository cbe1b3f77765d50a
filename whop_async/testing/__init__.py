"""Test helpers for code that uses whop_async: a real Whop emulator on loopback.

``async with WhopEmulator() as server:`` starts it; point ``AsyncWhop(server.api_key,
base_url=server.base_url)`` at it. The opt-in pytest plugin (``pytest_plugins =
["whop_async.testing.pytest_plugin"]``) provides ready ``whop_emulator`` and ``whop_client``
fixtures. ``FakeClock`` lets a test drive the time that pacing and backoff read.
"""

from __future__ import annotations

from ._clock import FakeClock
from ._emulator import DEFAULT_API_KEY, WHOP_RATE_LIMIT, WhopEmulator
from ._limits import most_in_any_window
from ._script import (
    Fault,
    RandomFaults,
    ReceivedNotification,
    ReceivedRequest,
    ScriptedResponse,
)
from ._versions import RELEASED_API_VERSIONS

__all__ = [
    "DEFAULT_API_KEY",
    "RELEASED_API_VERSIONS",
    "WHOP_RATE_LIMIT",
    "FakeClock",
    "Fault",
    "RandomFaults",
    "ReceivedNotification",
    "ReceivedRequest",
    "ScriptedResponse",
    "WhopEmulator",
    "most_in_any_window",
]
