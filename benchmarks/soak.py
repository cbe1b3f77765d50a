"""A bounded soak: many notifications through random faults, each delivered exactly once.

The emulator runs in its own process (so the client's memory is the client's alone) and injects
faults into a fraction of requests: 500s, dropped connections, notifications stored and then
dropped before the answer, and 429s with a short ``retry-after-ms``. The client streams the
whole batch through ``iter_notifications``. At the end the emulator reports what it stored,
and the soak checks that every notification arrived exactly once and that memory stayed flat.

    python benchmarks/soak.py [--count 100000] [--fault-rate 0.05] [--concurrency 64]
                              [--no-rate-limits] [--rate-limit none|REQUESTS/SECONDS]

Exits with status 1 when a check fails. The soak is about faults, not about Whop's limit: by
default neither the emulator nor the client limits the rate (``rate_limit=None`` on both), so
100,000 notifications take a minute rather than the 2 h 47 min they take at 600 per minute.
``--rate-limit 6000/60`` gives both the same limit instead (the client's limiter then also sees
the injected 429s); ``--no-rate-limits`` injects only the other three faults.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import multiprocessing
import os
import resource
import sys
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

from whop_async import AsyncWhop, Backoff, BulkStats, RateLimit, iter_notifications
from whop_async.testing import RandomFaults, WhopEmulator

#: Memory may grow this much between the 1,000th item and the end before the soak calls it a leak.
RSS_GROWTH_ALLOWED_KIB = 8 * 1024


def _pin(core: int) -> None:
    """Keep this process on one core (when there are two) so client and server do not contend."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {core})


def _serve(connection: Connection, faults: RandomFaults, rate_limit: RateLimit | None) -> None:
    """The emulator process: serve until asked for the report, send it, stop."""
    _pin(1)
    asyncio.run(_serve_until_reported(connection, faults, rate_limit))


async def _serve_until_reported(
    connection: Connection, faults: RandomFaults, rate_limit: RateLimit | None
) -> None:
    emulator = WhopEmulator(random_faults=faults, rate_limit=rate_limit, record_requests=False)
    async with emulator as server:
        connection.send((server.base_url, server.api_key))
        await asyncio.get_running_loop().run_in_executor(None, connection.recv)
        keys = server.idempotency_keys()
        connection.send(
            {
                "requests": server.request_count,
                "notifications": len(server.notifications),
                "distinct_keys": len(set(keys)),
                "keyless": keys.count(None),
                "answers": dict(server.status_counts),
            }
        )


def _peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _current_rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0  # pragma: no cover - not Linux


def _rate(send_rate: float | None) -> str:
    return "off" if send_rate is None else f"{send_rate:.1f}/s"


def _items(count: int) -> Iterator[dict[str, Any]]:
    for index in range(count):
        yield {"company_id": "biz_soak", "title": f"Soak {index}", "content": "Still standing."}


async def _send_all(base_url: str, api_key: str, options: argparse.Namespace) -> dict[str, Any]:
    stats = BulkStats()
    failures: collections.Counter[str] = collections.Counter()
    rss_at_start = peak_at_start = 0
    done = 0
    started = time.monotonic()
    backoff = Backoff(initial=options.backoff, maximum=1.0)
    async with AsyncWhop(
        api_key,
        base_url=base_url,
        backoff=backoff,
        max_retries=options.max_retries,
        timeout=10,
        rate_limit=options.rate_limit,
    ) as client:
        outcomes = iter_notifications(
            client, _items(options.count), concurrency=options.concurrency, stats=stats
        )
        async for outcome in outcomes:
            done += 1
            if outcome.error is not None:  # keys are not kept here: that would grow memory
                failures[type(outcome.error).__name__] += 1
            if done == min(1000, options.count):
                rss_at_start, peak_at_start = _current_rss_kib(), _peak_rss_kib()
            if done % max(1, options.count // 10) == 0:
                elapsed = time.monotonic() - started
                print(
                    f"  {done:>7} done in {elapsed:6.1f} s ({done / elapsed:6.0f}/s), "
                    f"{stats.retries} retries, {stats.rate_limited} 429s, "
                    f"pacing {_rate(stats.send_rate)}, "
                    f"RSS {_current_rss_kib() / 1024:.1f} MiB",
                    flush=True,
                )
    return {
        "seconds": time.monotonic() - started,
        "outcomes": done,
        "succeeded": stats.succeeded,
        "failures": dict(failures),
        "attempts": stats.attempts,
        "retries": stats.retries,
        "rate_limited": stats.rate_limited,
        "rate_limit_wait": stats.rate_limit_wait,
        "send_rate": stats.send_rate,
        "rss_start_kib": rss_at_start,
        "peak_start_kib": peak_at_start,
        "rss_end_kib": _current_rss_kib(),
        "peak_end_kib": _peak_rss_kib(),
    }


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="notifications to send")
    parser.add_argument("--fault-rate", type=float, default=0.05, help="fraction of faulty answers")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--max-retries", type=int, default=5, help="retries per notification")
    parser.add_argument("--backoff", type=float, default=0.05, help="first backoff, in seconds")
    parser.add_argument("--retry-after-ms", default="20", help="the injected 429s' retry-after-ms")
    parser.add_argument(
        "--no-rate-limits", action="store_true", help="inject no 429s, only the other faults"
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds the emulator's faults")
    parser.add_argument(
        "--rate-limit",
        type=_rate_limit,
        default=None,
        help="REQUESTS/SECONDS for both the emulator and the client; 'none' (default) for none",
    )
    return parser.parse_args(argv)


def _rate_limit(text: str) -> RateLimit | None:
    return None if text == "none" else RateLimit.parse(text)


def main(argv: list[str] | None = None) -> int:
    options = _parse(argv)
    faults = RandomFaults(
        rate=options.fault_rate,
        seed=options.seed,
        retry_after_ms=options.retry_after_ms,
        rate_limits=not options.no_rate_limits,
    )
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    server = context.Process(
        target=_serve,
        args=(theirs, faults, options.rate_limit),
        daemon=True,
    )
    server.start()
    try:
        base_url, api_key = ours.recv()
        _pin(0)
        print(
            f"Soak: {options.count} notifications, {options.fault_rate:.0%} faults "
            f"({'no 429s' if options.no_rate_limits else '429s included'}), "
            f"concurrency {options.concurrency}, rate limit {options.rate_limit or 'none'}, "
            f"emulator pid {server.pid}",
            flush=True,
        )
        client = asyncio.run(_send_all(base_url, api_key, options))
        ours.send("report")
        emulator = ours.recv()
    finally:
        server.join(timeout=10)
        if server.is_alive():
            server.terminate()
    growth = client["peak_end_kib"] - client["peak_start_kib"]
    checks = {
        "every outcome reported": client["outcomes"] == options.count,
        "no failures": not client["failures"],
        "distinct keys accepted == count": emulator["distinct_keys"] == options.count,
        "notifications stored == count": emulator["notifications"] == options.count,
        "successes the client saw == count": client["succeeded"] == options.count,
        f"peak RSS growth <= {RSS_GROWTH_ALLOWED_KIB // 1024} MiB": growth
        <= RSS_GROWTH_ALLOWED_KIB,
    }
    answers = emulator["answers"]
    rows = [
        ("notifications", options.count),
        ("fault rate", f"{options.fault_rate:.1%}"),
        ("rate limit (emulator and client)", options.rate_limit or "none"),
        ("wall time", f"{client['seconds']:.1f} s ({options.count / client['seconds']:.0f}/s)"),
        ("requests seen by the emulator", emulator["requests"]),
        ("notifications stored", emulator["notifications"]),
        ("distinct idempotency keys stored", emulator["distinct_keys"]),
        ("succeeded (client)", client["succeeded"]),
        ("failed (client)", sum(client["failures"].values()) or 0),
        ("retries (5xx, drops, timeouts)", client["retries"]),
        (
            "429s (time the batch waited)",
            f"{client['rate_limited']} ({client['rate_limit_wait']:.1f} s)",
        ),
        ("client pacing at the end", _rate(client["send_rate"])),
        ("injected 500s", answers.get(500, 0)),
        ("injected drops", answers.get("drop", 0)),
        ("injected accept-then-drop", answers.get("accept_then_drop", 0)),
        ("client RSS after 1,000", f"{client['rss_start_kib'] / 1024:.1f} MiB"),
        ("client RSS at the end", f"{client['rss_end_kib'] / 1024:.1f} MiB"),
        ("client peak RSS after 1,000", f"{client['peak_start_kib'] / 1024:.1f} MiB"),
        ("client peak RSS at the end", f"{client['peak_end_kib'] / 1024:.1f} MiB"),
    ]
    print("\n| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    if client["failures"]:
        print(f"\nFailures: {client['failures']}")
    print()
    for name, passed in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}  {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
