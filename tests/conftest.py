"""Shared test setup: the emulator plugin, asyncio debug mode, and three guards on every test.

* An unclosed aiohttp session or connector fails the test that leaked it. aiohttp reports those
  from ``__del__`` through the event loop's exception handler (which logs to the ``asyncio``
  logger) at garbage-collection time, after the warning filters have had their say, so
  ``filterwarnings = error`` alone misses them: the guard collects garbage at teardown and
  fails on any such report.

  A full collection scans the whole heap (every module the suite imports): ~75 ms, more than a
  minute over the suite. So each test collects the young generations, where what it made and
  dropped usually still is, and each module ends with one full collection: a leak that was
  promoted before its test ended, or died later (a module fixture's), still fails the run,
  naming the module.
* Every test runs in asyncio debug mode.
* Every ``whop_async`` log record is captured at DEBUG, and none may contain the API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import trustme

from whop_async import AsyncWhop, Backoff
from whop_async.testing import DEFAULT_API_KEY, WhopEmulator

pytest_plugins = ["whop_async.testing.pytest_plugin"]

collect_ignore = ["typing"]


def pytest_configure(config: pytest.Config) -> None:
    # pytest-asyncio reads --asyncio-debug first, then the asyncio_debug ini value; turn it on
    # unless the command line said otherwise, so every test loop runs with debug=True.
    if config.getoption("asyncio_debug") is None:
        config.option.asyncio_debug = True


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _mentions_unclosed(text: str) -> bool:
    return "unclosed" in text.lower()


def _leaks(records: list[logging.LogRecord], handler_calls: list[str]) -> list[str]:
    """The reports of resources left open among asyncio's records and the handler's calls."""
    leaks = [
        record.getMessage().splitlines()[0]
        for record in records
        if record.levelno >= logging.ERROR and _mentions_unclosed(record.getMessage())
    ]
    leaks += [message for message in handler_calls if _mentions_unclosed(message)]
    return list(dict.fromkeys(leaks))


@contextlib.contextmanager
def _asyncio_records() -> Iterator[list[logging.LogRecord]]:
    recorder = _Recorder()
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.addHandler(recorder)
    try:
        yield recorder.records
    finally:
        asyncio_logger.removeHandler(recorder)


@pytest.fixture(scope="module", autouse=True)
def _fail_on_unclosed_resources_of_the_module(request: pytest.FixtureRequest) -> Iterator[None]:
    """Collect the whole heap once the module is done: a leak that died late still fails."""
    yield
    with _asyncio_records() as records:
        gc.collect()
    leaks = _leaks(records, [])
    if leaks:
        pytest.fail(f"resources left open by {request.node.name}: {leaks}", pytrace=False)


@pytest.fixture
def _handler_calls() -> list[str]:
    """The messages that reached the event loop's exception handler during the test."""
    return []


@pytest.fixture(autouse=True)
def _fail_on_unclosed_resources(
    request: pytest.FixtureRequest, _handler_calls: list[str]
) -> Iterator[None]:
    """Fail the test if garbage collection finds an aiohttp session or connector left open."""
    with _asyncio_records() as records:
        if inspect.iscoroutinefunction(request.function):
            request.getfixturevalue("_loop_guard")
        yield
        gc.collect(1)  # the young generations: see above
    leaks = _leaks(records, _handler_calls)
    if leaks:
        pytest.fail(f"resources left open: {leaks}", pytrace=False)


@pytest.fixture
async def _loop_guard(_handler_calls: list[str]) -> None:
    """For async tests: check debug mode, and record what reaches the loop's exception handler."""
    loop = asyncio.get_running_loop()
    assert loop.get_debug(), "asyncio debug mode is off"
    handler_calls = _handler_calls

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # Keep the message only: holding the context would keep the leaked object alive.
        handler_calls.append(str(context.get("message", "")))
        loop.default_exception_handler(context)

    # The handler stays on the loop: a session collected after the test still reports to it.
    loop.set_exception_handler(handler)


@pytest.fixture(autouse=True)
def whop_logs() -> Iterator[list[logging.LogRecord]]:
    """Every ``whop_async`` record of the test, at DEBUG; none may contain the API key."""
    logger = logging.getLogger("whop_async")
    recorder = _Recorder()
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(recorder)
    try:
        yield recorder.records
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(level)
    leaked = [r.getMessage() for r in recorder.records if DEFAULT_API_KEY in r.getMessage()]
    assert not leaked, f"the API key appeared in log records: {leaked}"


@pytest.fixture
async def make_client(whop_emulator: WhopEmulator) -> AsyncIterator[Callable[..., AsyncWhop]]:
    """Build clients bound to ``whop_emulator`` (instant backoff unless told otherwise).

    Every client made is closed at teardown, so a test can focus on its story.
    """
    clients: list[AsyncWhop] = []

    def make(**options: Any) -> AsyncWhop:
        options.setdefault("base_url", whop_emulator.base_url)
        options.setdefault("backoff", Backoff.instant())
        options.setdefault("timeout", 5.0)
        client = AsyncWhop(options.pop("api_key", whop_emulator.api_key), **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture(scope="session")
def certificate_authority() -> trustme.CA:
    """A private CA for TLS tests: issue a certificate for 127.0.0.1, trust it in a client."""
    return trustme.CA()
