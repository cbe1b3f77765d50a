"""Test helpers for code that uses whop_async: a real Whop emulator on loopback.

``async with WhopEmulator() as server:`` starts it; point ``AsyncWhop(server.api_key,
base_url=server.base_url)`` at it. The opt-in pytest plugin (``pytest_plugins =
["whop_async.testing.pytest_plugin"]``) provides ready ``whop_emulator`` and ``whop_client``
fixtures.
"""

from __future__ import annotations

from ._emulator import DEFAULT_API_KEY, WHOP_RATE_LIMIT, WhopEmulator
from ._limits import most_in_any_window
from ._script import (
    Fault,
    RandomFaults,
    ReceivedNotification,
    ReceivedRequest,
    ScriptedResponse,
)

__all__ = [
    "DEFAULT_API_KEY",
    "WHOP_RATE_LIMIT",
    "Fault",
    "RandomFaults",
    "ReceivedNotification",
    "ReceivedRequest",
    "ScriptedResponse",
    "WhopEmulator",
    "most_in_any_window",
]
