"""Opt-in pytest fixtures: a running Whop emulator and a client bound to it.

Enable with ``pytest_plugins = ["whop_async.testing.pytest_plugin"]`` in a ``conftest.py``
(or ``-p whop_async.testing.pytest_plugin``). The fixtures are async, so the tests need an
asyncio plugin such as pytest-asyncio. The client retries instantly, so tests stay fast.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .._client import AsyncWhop
from .._config import Backoff
from ._emulator import WhopEmulator

__all__ = ["whop_client", "whop_emulator"]


@pytest.fixture
async def whop_emulator() -> AsyncIterator[WhopEmulator]:
    """A Whop emulator serving on 127.0.0.1 for the duration of one test."""
    async with WhopEmulator() as server:
        yield server


@pytest.fixture
async def whop_client(whop_emulator: WhopEmulator) -> AsyncIterator[AsyncWhop]:
    """An ``AsyncWhop`` bound to ``whop_emulator``, with instant backoff and a 10 s timeout."""
    async with AsyncWhop(
        whop_emulator.api_key,
        base_url=whop_emulator.base_url,
        backoff=Backoff.instant(),
        timeout=10.0,
    ) as client:
        yield client
