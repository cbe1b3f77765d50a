"""What the commands share: exit codes, output that never shows the key, the client, and the
send loop of ``bulk`` and ``demo`` with its Ctrl-C handling and closing table."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
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
    BatchAbortedError,
    BulkItem,
    BulkOutcome,
    BulkStats,
    InvalidParamsError,
    OutcomeUnknownError,
    RateLimit,
    WhopError,
    iter_notifications,
)
from .._config import API_KEY_ENV
from ._progress import Ending, Progress

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "BulkSend",
    "Output",
    "UsageError",
    "best_rate",
    "describe_limit",
    "make_client",
]

EXIT_OK: Final = 0
#: Some notifications were not sent.
EXIT_FAILED: Final = 1
#: Bad arguments, a bad file, no API key or a refused one: nothing was (or could be) sent.
EXIT_USAGE: Final = 2
#: Stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED: Final = 130


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
        return text.replace(self._secret, "[redacted]") if self._secret else text

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

        def redact(record: logging.LogRecord) -> bool:
            message = record.getMessage()
            if (redacted := self.redact(message)) != message:
                record.msg, record.args = redacted, None
            return True

        handler = logging.StreamHandler(self.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(redact)
        logger = logging.getLogger("whop_async")
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)


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

    ``--api-version`` wins over ``WHOP_API_VERSION``, which the client reads itself; ``none``
    sends none.

    Raises:
        UsageError: no API key, or an option the client rejects.
    """
    key = api_key_from(args)
    if key is None or not key.strip():
        raise UsageError(
            f"no API key: pass --api-key or set the {API_KEY_ENV} environment variable"
        )
    version: str | None = args.api_version
    unpinned = version is not None and version.strip().lower() == "none"
    try:
        return AsyncWhop(
            key,
            base_url=args.base_url,
            app_id=args.app_id,
            api_version=None if unpinned else NOT_GIVEN if version is None else version,
            proxy=args.proxy,
            timeout=args.timeout,
            rate_limit=rate_limit,
            max_retries=args.max_retries,
            connection_limit=max(DEFAULT_CONNECTION_LIMIT, concurrency),
        )
    except WhopError as exc:
        raise UsageError(str(exc)) from None


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

    Made inside the running loop, it takes over SIGINT and SIGTERM (where the platform allows):
    the first sets the library's ``stop`` (no new request starts, the ones sent finish, the ones
    not sent end as ``BatchAbortedError``); the second cancels the send, and the library reports
    each item in flight as ``OutcomeUnknownError`` with its key, so a re-run sends it again with
    the same key.
    """

    def __init__(self, args: argparse.Namespace, output: Output) -> None:
        self.stop = asyncio.Event()
        self.fatal: WhopError | None = None
        self.stats = BulkStats()
        self.elapsed = 0.0
        self.progress: Progress  # from the start of ``run``
        self._args = args
        self._output = output
        self._cancelled = False
        task = asyncio.current_task()
        assert task is not None
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows: no handlers
                asyncio.get_running_loop().add_signal_handler(signum, self._on_signal, task)

    def _on_signal(self, task: asyncio.Task[object]) -> None:
        if self.stop.is_set():
            self._cancelled = True
            task.cancel()
            return
        self.stop.set()
        self._output.note(
            "\nStopping: no new requests; waiting for the ones in flight "
            "(press Ctrl-C again to abort them)."
        )

    async def run(
        self,
        client: AsyncWhop,
        items: AsyncGenerator[BulkItem, None],
        on_outcome: Callable[[BulkOutcome, Ending], None],
        *,
        total: int | None,
    ) -> None:
        """Send ``items`` (``total`` of them, if known), handing each outcome to ``on_outcome``.

        The client and ``items`` are closed at the end. A 401 ends the send (it is in ``fatal``
        then), and so does a second Ctrl-C; neither ends the command.

        Raises:
            UsageError: the library refused ``--concurrency`` or ``--max-rate``.
        """

        def on_result(outcome: BulkOutcome) -> None:
            ending: Ending = "sent" if outcome.ok else "failed"
            if isinstance(outcome.error, (BatchAbortedError, OutcomeUnknownError)):
                ending = "interrupted"
            self.progress.advance(ending)
            on_outcome(outcome, ending)

        args = self._args
        self.progress = Progress(
            total=total,
            stream=self._output.stderr,
            draw=not args.no_progress,
            expected_rate=best_rate(args.rate_limit, args.max_rate),
        )
        started = time.monotonic()
        try:
            async with client, contextlib.aclosing(items):
                outcomes = iter_notifications(
                    client,
                    items,
                    concurrency=args.concurrency,
                    max_rate=args.max_rate,
                    stats=self.stats,
                    stop=self.stop,
                    on_result=on_result,  # told of the items in flight on a cancel, too
                )
                async with contextlib.aclosing(outcomes):
                    async for _ in outcomes:
                        pass
        except FATAL_ERRORS as exc:
            self.fatal = exc
        except InvalidParamsError as exc:  # the options; every item was checked before
            raise UsageError(str(exc)) from None
        except asyncio.CancelledError:
            if not self._cancelled:
                raise
            task = asyncio.current_task()
            if task is not None and sys.version_info >= (3, 11):
                task.uncancel()  # handled: the command goes on to its summary
        finally:
            self.progress.close()
            self.elapsed = time.monotonic() - started

    def print_summary(
        self, *, skipped: int | None = None, notes: Iterable[tuple[str, str]] = ()
    ) -> None:
        """The closing table, on stdout."""
        stats, counts = self.stats, self.progress.counts
        rate = stats.attempts / self.elapsed if self.elapsed > 0 else 0.0
        lines = [
            ("sent", f"{counts['sent']}"),
            ("replayed", f"{stats.replayed} (sent by an earlier run with the same keys)"),
            ("failed", f"{counts['failed']}"),
        ]
        if counts["interrupted"]:
            stopped = f"{counts['interrupted']} (unanswered at the stop; a re-run sends them)"
            lines.append(("interrupted", stopped))
        if skipped is not None:
            lines.append(("skipped", f"{skipped} (already in the journal)"))
        lines += [
            ("elapsed", f"{self.elapsed:.2f} s"),
            ("rate", f"{rate:.1f} requests/s ({stats.attempts} requests)"),
            ("rate limit", describe_limit(self._args.rate_limit)),
            ("retries", f"{stats.retries}"),
            ("429s", f"{stats.rate_limited}"),
            *notes,
        ]
        width = max(len(label) for label, _ in lines)
        for label, value in lines:
            self._output.result(f"{label:<{width}}  {value}")
