"""What the commands share: exit codes, output that never shows the key, the client, Ctrl-C, and
the send loop of ``bulk`` and ``demo``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Final, TextIO

from .. import (
    DEFAULT_CONCURRENCY,
    DEFAULT_CONNECTION_LIMIT,
    DEFAULT_RATE_LIMIT,
    FATAL_ERRORS,
    NOT_GIVEN,
    AsyncWhop,
    BulkItem,
    BulkOutcome,
    BulkStats,
    NotGiven,
    RateLimit,
    WhopError,
    iter_notifications,
)
from .._config import API_KEY_ENV
from ._progress import make_progress

__all__ = [
    "BulkSend",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Interrupt",
    "Output",
    "UsageError",
    "best_rate",
    "describe_limit",
    "make_client",
]

EXIT_OK: Final = 0
#: Some notifications were not sent.
EXIT_FAILED: Final = 1
#: Bad arguments, a bad file, no API key: nothing was (or could be) sent.
EXIT_USAGE: Final = 2
#: Stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED: Final = 130

_REDACTED: Final = "[redacted]"


class UsageError(Exception):
    """Bad arguments or configuration: reported on stderr, exit status 2."""


class Output:
    """stdout for results, stderr for the rest; the API key is cut out of everything."""

    def __init__(self, *, api_key: str | None, stdout: TextIO, stderr: TextIO) -> None:
        self._secret = api_key.strip() if api_key else None
        self.stdout = stdout
        self.stderr = stderr

    def redact(self, text: str) -> str:
        """``text`` with the API key replaced."""
        if self._secret:
            return text.replace(self._secret, _REDACTED)
        return text

    def result(self, text: str) -> None:
        """A line of the command's result, on stdout."""
        print(self.redact(text), file=self.stdout, flush=True)

    def note(self, text: str) -> None:
        """A message for the person at the terminal, on stderr."""
        print(self.redact(text), file=self.stderr, flush=True)

    def error(self, text: str) -> None:
        """An error, on stderr, prefixed with the program name."""
        self.note(f"whop-async: error: {text}")

    def log_to_stderr(self, verbosity: int) -> None:
        """Show the library's log at INFO (``-v``) or DEBUG (``-vv``), the key redacted."""
        if verbosity <= 0:
            return
        handler = logging.StreamHandler(self.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(self._redact_record)
        logger = logging.getLogger("whop_async")
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)

    def _redact_record(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def api_key_from(args: argparse.Namespace) -> str | None:
    """The key the command will use, from ``--api-key`` or the environment."""
    key: str | None = getattr(args, "api_key", None)
    return key if key is not None else os.environ.get(API_KEY_ENV)


def make_client(
    args: argparse.Namespace,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    rate_limit: RateLimit | None = DEFAULT_RATE_LIMIT,
) -> AsyncWhop:
    """The client the command line options and environment describe.

    ``--api-version`` wins over ``WHOP_API_VERSION``, which the client reads itself.

    Raises:
        UsageError: no API key, or an option the client rejects.
    """
    key = api_key_from(args)
    if key is None or not key.strip():
        raise UsageError(
            f"no API key: pass --api-key or set the {API_KEY_ENV} environment variable"
        )
    try:
        return AsyncWhop(
            key,
            base_url=args.base_url,
            app_id=args.app_id,
            api_version=_api_version(args.api_version),
            proxy=args.proxy,
            timeout=args.timeout,
            rate_limit=rate_limit,
            max_retries=args.max_retries,
            connection_limit=max(DEFAULT_CONNECTION_LIMIT, concurrency),
        )
    except WhopError as exc:
        raise UsageError(str(exc)) from None


def _api_version(flag: str | None) -> str | NotGiven | None:
    """``--api-version``: a version, ``none`` to send none, or (not given) the client's default."""
    if flag is None:
        return NOT_GIVEN
    return None if flag.strip().lower() == "none" else flag


class Interrupt:
    """Ctrl-C (or SIGTERM) handling for a run: the first asks to stop, the second aborts.

    Made inside the running loop, it takes over SIGINT and SIGTERM there (where the platform
    allows). After the first signal no new request starts and the ones in flight finish, so every
    row the server confirmed is recorded; the second cancels those too.
    """

    def __init__(self, output: Output) -> None:
        self._output = output
        self.requested = asyncio.Event()
        self.forced = False
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows: no handlers
                loop.add_signal_handler(signum, self._on_signal, task)

    def _on_signal(self, task: asyncio.Task[object]) -> None:
        if not self.requested.is_set():
            self.requested.set()
            self._output.note(
                "\nStopping: no new requests; waiting for the ones in flight "
                "(press Ctrl-C again to abort them)."
            )
        else:
            self.forced = True
            task.cancel()


def describe_limit(limit: RateLimit | None) -> str:
    """``600 per 60 s``, or ``off``."""
    return "off" if limit is None else f"{limit.requests} per {limit.per:g} s"


def best_rate(rate_limit: RateLimit | None, max_rate: float | None) -> float | None:
    """The fastest a bulk send can go, in requests per second; ``None`` when nothing limits it."""
    rates = [max_rate] if max_rate is not None else []
    if rate_limit is not None:
        rates.append(rate_limit.rate)
    return min(rates, default=None)


class BulkSend:
    """A send of many notifications as ``bulk`` and ``demo`` run it, through ``iter_notifications``.

    It holds the progress display, the counters and the clock, sends at the pace the flags set
    (``--concurrency``, ``--max-rate``), and prints the closing table.
    """

    def __init__(
        self,
        args: argparse.Namespace,
        output: Output,
        client: AsyncWhop,
        interrupt: Interrupt,
        *,
        total: int | None,
    ) -> None:
        self.interrupt = interrupt
        self.progress = make_progress(
            total=total,
            stream=output.stderr,
            enabled=not args.no_progress,
            expected_rate=best_rate(client.rate_limit, args.max_rate),
        )
        self.stats = BulkStats()
        self.elapsed = 0.0
        self._args = args
        self._output = output
        self._client = client

    async def run(
        self, items: AsyncGenerator[BulkItem, None], on_outcome: Callable[[BulkOutcome], None]
    ) -> None:
        """Send ``items`` and hand each outcome to ``on_outcome``; close the client and ``items``.

        A second Ctrl-C cancels the requests in flight and ends the send, not the command.
        """
        client = self._client
        started = time.monotonic()
        try:
            async with (
                client,
                contextlib.aclosing(items),
                contextlib.aclosing(
                    iter_notifications(
                        client,
                        items,
                        concurrency=self._args.concurrency,
                        max_rate=self._args.max_rate,
                        stats=self.stats,
                    )
                ) as outcomes,
            ):
                async for outcome in outcomes:
                    on_outcome(outcome)
        except FATAL_ERRORS:
            pass  # on_outcome saw the item that met it, and the run reports it once
        except asyncio.CancelledError:
            if not self.interrupt.forced:
                raise
        finally:
            self.progress.close()
            self.elapsed = time.monotonic() - started

    def print_summary(
        self, *, skipped: int | None = None, notes: Iterable[tuple[str, str]] = ()
    ) -> None:
        """The closing table, on stdout."""
        stats = self.stats
        rate = stats.attempts / self.elapsed if self.elapsed > 0 else 0.0
        lines = [("sent", f"{self.progress.sent}"), ("failed", f"{self.progress.failed}")]
        if skipped is not None:
            lines.append(("skipped", f"{skipped} (already in the journal)"))
        lines += [
            ("elapsed", f"{self.elapsed:.2f} s"),
            ("rate", f"{rate:.1f} requests/s ({stats.attempts} requests)"),
            ("rate limit", describe_limit(self._client.rate_limit)),
            ("retries", f"{stats.retries}"),
            ("429s", f"{stats.rate_limited}"),
            *notes,
        ]
        width = max(len(label) for label, _ in lines)
        for label, value in lines:
            self._output.result(f"{label:<{width}}  {value}")
