"""Opt-in pytest fixtures: a running Whop emulator and a client bound to it.

Enable with ``pytest_plugins = ["whop_async.testing.pytest_plugin"]`` in a ``conftest.py``
(or ``-p whop_async.testing.pytest_plugin``). The fixtures are async, so the tests need an
asyncio plugin such as pytest-asyncio. The client retries instantly, so tests stay fast.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

try:  # pytest-asyncio's own decorator makes the fixtures work in its strict mode too
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # pragma: no cover - any other asyncio plugin in auto mode
    _async_fixture = pytest.fixture  # type: ignore[assignment]

from .._client import AsyncWhop
from .._config import Backoff
from ._emulator import WhopEmulator

__all__ = ["whop_client", "whop_emulator"]


@_async_fixture
async def whop_emulator() -> AsyncIterator[WhopEmulator]:
    """A Whop emulator serving on 127.0.0.1 for the duration of one test."""
    async with WhopEmulator() as server:
        yield server


@_async_fixture
async def whop_client(whop_emulator: WhopEmulator) -> AsyncIterator[AsyncWhop]:
    """An ``AsyncWhop`` bound to ``whop_emulator``, with instant backoff and a 10 s timeout."""
    async with AsyncWhop(
        whop_emulator.api_key,
        base_url=whop_emulator.base_url,
        backoff=Backoff.instant(),
        timeout=10.0,
    ) as client:
        yield client
