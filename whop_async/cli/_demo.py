"""``whop-async demo``: a bulk send to the built-in emulator, to watch the client work offline.

The emulator limits requests as Whop does, at ``--rate-limit`` (Whop's 600 a minute, time-scaled
to 200 a second by default), and the client is told the same limit, so the demo shows the pacing:
the busiest second at the server holds no more than the limit allows, and no request meets a 429.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections.abc import AsyncGenerator
from typing import Any, Final

from .. import AsyncWhop, Backoff, BulkOutcome, RateLimit
from ..testing import RandomFaults, WhopEmulator
from ._progress import Ending
from ._shared import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, BulkSend, Output, describe_limit

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
    send = BulkSend(args, output)  # first: Ctrl-C stops cleanly from now on
    limit: RateLimit | None = args.rate_limit
    faults = None
    if args.faults:
        faults = RandomFaults(
            rate=args.faults, seed=random.randrange(2**32), retry_after=DEMO_RETRY_AFTER
        )
    async with WhopEmulator(
        rate_limit=limit, random_faults=faults, response_delay=DEMO_LATENCY
    ) as server:
        output.note(
            f"Emulator on {server.base_url} ({DEMO_LATENCY * 1000:.0f} ms per answer, "
            f"{describe_limit(limit)}); sending {args.count} notifications, "
            f"{args.concurrency} at a time"
            + (f", with {args.faults:.0%} of requests faulty" if faults else "")
            + "."
        )
        client = AsyncWhop(
            server.api_key,
            base_url=server.base_url,
            backoff=DEMO_BACKOFF,
            max_retries=DEMO_MAX_RETRIES,
            rate_limit=limit,
            timeout=10.0,
            connection_limit=max(args.concurrency, 16),
        )

        def on_outcome(outcome: BulkOutcome, ending: Ending) -> None:
            if ending == "failed" and send.progress.counts["failed"] <= MAX_REPORTED:
                send.progress.log(f"notification {outcome.index + 1}: {outcome.error}")

        await send.run(client, _notifications(args.count), on_outcome, total=args.count)
        send.print_summary()
        _print_received(output, server, limit)
    if send.stop.is_set():
        output.note(f"Interrupted after {send.progress.counts['sent']} notifications.")
        return EXIT_INTERRUPTED
    return EXIT_FAILED if send.progress.counts["failed"] else EXIT_OK


def _print_received(output: Output, server: WhopEmulator, limit: RateLimit | None) -> None:
    """What the emulator received, under the summary."""
    statuses = ", ".join(  # the HTTP statuses, then the faults by name
        f"{status}: {count}"
        for status, count in sorted(server.status_counts.items(), key=lambda s: str(s[0]))
    )
    window = f"{server.busiest_window(limit.per)} requests in {limit.per:g} s" if limit else "-"
    output.result("emulator received:")
    for label, value in (
        ("accepted", f"{len(server.notifications)} notifications"),
        ("distinct keys", f"{len(set(server.idempotency_keys()))}"),
        ("peak in flight", f"{server.peak_in_flight}"),
        ("busiest window", f"{window} (limit {describe_limit(limit)})"),
        ("statuses", statuses or "none"),
    ):
        output.result(f"  {label:<15}{value}")


async def _notifications(count: int) -> AsyncGenerator[dict[str, Any], None]:
    for number in range(1, count + 1):
        yield {
            "account_id": "biz_demo",
            "title": f"Demo notification {number}",
            "content": "Sent by whop-async demo to the built-in emulator.",
        }
