"""``whop-async demo``: a bulk send to the built-in emulator, to watch the client work offline."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from typing import Any, Final

from .._bulk import iter_notifications
from .._client import AsyncWhop
from .._config import Backoff
from .._gate import BulkStats
from ..testing import RandomFaults, WhopEmulator
from ._progress import make_progress
from ._shared import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Interrupt,
    Output,
    print_summary,
)

__all__ = ["run_demo"]

#: Failures shown one by one before the rest are only counted.
MAX_REPORTED: Final = 5
#: Retries per notification: enough for the injected faults to be ridden out.
DEMO_MAX_RETRIES: Final = 6
#: Short waits, so that the demo shows retries without dragging.
DEMO_BACKOFF: Final = Backoff(initial=0.05, maximum=0.5, max_retry_after=1.0)
#: What the injected 429s ask for.
DEMO_RETRY_AFTER: Final = "0.05"
#: Each answer of the emulator takes this long, like a nearby API, so that requests overlap and
#: "peak in flight" shows the concurrency at work.
DEMO_LATENCY: Final = 0.005


def run_demo(args: argparse.Namespace, output: Output) -> int:
    """Run the demo; no API key or network needed."""
    return asyncio.run(_demo(args, output))


async def _demo(args: argparse.Namespace, output: Output) -> int:
    interrupt = Interrupt(output)
    interrupt.install()
    faults = None
    if args.faults:
        faults = RandomFaults(
            rate=args.faults, seed=random.randrange(2**32), retry_after=DEMO_RETRY_AFTER
        )
    async with WhopEmulator(
        random_faults=faults, record_requests=False, response_delay=DEMO_LATENCY
    ) as server:
        output.note(
            f"Emulator on {server.base_url} ({DEMO_LATENCY * 1000:.0f} ms per answer); "
            f"sending {args.count} notifications, "
            f"{args.concurrency} at a time"
            + (f", with {args.faults:.0%} of requests faulty" if faults else "")
            + "."
        )
        client = AsyncWhop(
            server.api_key,
            base_url=server.base_url,
            backoff=DEMO_BACKOFF,
            max_retries=DEMO_MAX_RETRIES,
            timeout=10.0,
            connection_limit=max(args.concurrency, 16),
        )
        stats = BulkStats()
        progress = make_progress(
            total=args.count, stream=output.stderr, enabled=not args.no_progress
        )
        sent = failed = 0
        started = time.monotonic()
        try:
            async with (
                client,
                contextlib.aclosing(
                    iter_notifications(
                        client,
                        _notifications(args.count, interrupt.requested),
                        concurrency=args.concurrency,
                        max_rate=args.max_rate,
                        stats=stats,
                    )
                ) as outcomes,
            ):
                async for outcome in outcomes:
                    progress.advance(ok=outcome.ok)
                    if outcome.ok:
                        sent += 1
                        continue
                    failed += 1
                    if failed <= MAX_REPORTED:
                        progress.log(f"notification {outcome.index + 1}: {outcome.error}")
        except asyncio.CancelledError:
            if not interrupt.forced:
                raise
        finally:
            progress.close()
        elapsed = time.monotonic() - started
        print_summary(output, sent=sent, failed=failed, elapsed=elapsed, stats=stats)
        keys = server.idempotency_keys()
        statuses = ", ".join(
            f"{status}: {count}"
            for status, count in sorted(server.status_counts.items(), key=_status_order)
        )
        output.result("emulator received:")
        for label, value in (
            ("accepted", f"{len(server.notifications)} notifications"),
            ("distinct keys", f"{len(set(keys))}"),
            ("peak in flight", f"{server.peak_in_flight}"),
            ("statuses", statuses or "none"),
        ):
            output.result(f"  {label:<15}{value}")
    if interrupt.requested.is_set():
        output.note(f"Interrupted after {sent} notifications.")
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failed else EXIT_OK


async def _notifications(count: int, stop: asyncio.Event) -> AsyncIterator[dict[str, Any]]:
    for number in range(1, count + 1):
        if stop.is_set():
            return
        yield {
            "company_id": "biz_demo",
            "title": f"Demo notification {number}",
            "content": "Sent by whop-async demo to the built-in emulator.",
        }


def _status_order(item: tuple[int | str, int]) -> tuple[int, str]:
    status = item[0]
    return (status, "") if isinstance(status, int) else (1000, status)
