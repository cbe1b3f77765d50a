"""A ``WhopEmulator`` with Whop's documented limiter, in a process of its own, for rate_limits.py.

    python benchmarks/_limited_server.py --rate-limit 60/6 --window fixed

prints one JSON line, ``{"base_url": ..., "api_key": ...}``, once it listens, then reads
commands on stdin: ``report`` prints one JSON line with what the server saw, ``stop`` (or the
end of stdin) stops it. Running the server apart keeps the client's CPU from delaying its
answers, and the client's event loop from delaying the server's clock.

The report has every request to ``POST /notifications`` as ``[received_at, status]``
(``time.monotonic()``, the same clock as the client's on Linux). The emulator records when a
request arrived but not what it answered, so the answer is recovered: every attempt of an item
carries the item's idempotency key and the client stops at the first 200, so the last request
with a key is the one that was accepted and the ones before it were refused with 429. That holds
while nothing is replayed (no attempt timed out after the server stored it); the report says
whether the recovered 429s match the emulator's ``status_counts``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, Literal, TypeAlias

from whop_async import RateLimit
from whop_async.testing import WhopEmulator

NOTIFICATIONS_PATH = "/api/v1/notifications"
Window: TypeAlias = Literal["fixed", "sliding"]


def _key(headers: Any) -> str | None:
    for name, value in headers.items():
        if name.lower() == "idempotency-key":
            return str(value)
    return None


def request_timeline(server: WhopEmulator) -> list[tuple[float, int]]:
    """Each ``POST /notifications`` as ``(received_at, status)``, the status recovered from the
    idempotency keys as the module's docstring says (also used by ``shared_limit.py``)."""
    requests = [
        (request.received_at, _key(request.headers))
        for request in server.requests
        if request.method == "POST" and request.path == NOTIFICATIONS_PATH
    ]
    last_of_key = {key: index for index, (_, key) in enumerate(requests)}
    return [
        (received_at, 200 if last_of_key[key] == index else 429)
        for index, (received_at, key) in enumerate(requests)
    ]


def report(server: WhopEmulator) -> dict[str, Any]:
    """What the server saw: each request's arrival and answer, and what it stored."""
    timeline = request_timeline(server)
    stored_keys = server.idempotency_keys()
    answers = {str(label): count for label, count in server.status_counts.items()}
    recovered_429s = sum(status == 429 for _, status in timeline)
    return {
        "requests": timeline,
        "answers": answers,
        "consistent": recovered_429s == server.status_counts.get(429, 0)
        and server.status_counts.get(200, 0) == len(stored_keys),
        "notifications": len(stored_keys),
        "distinct_keys": len(set(stored_keys)),
        "keyless": stored_keys.count(None),
    }


async def serve(rate_limit: RateLimit | None, window: Window) -> None:
    """Serve until ``stop`` or the end of stdin; answer ``report`` with one JSON line."""
    loop = asyncio.get_running_loop()
    emulator = WhopEmulator(rate_limit=rate_limit, rate_limit_window=window)
    async with emulator as server:
        print(json.dumps({"base_url": server.base_url, "api_key": server.api_key}), flush=True)
        while True:
            command = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if command == "report":
                print(json.dumps(report(server)), flush=True)
            elif command in ("stop", ""):
                return


def main() -> None:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate-limit", default="60/6", help="REQUESTS/SECONDS, or 'none'")
    parser.add_argument("--window", choices=["fixed", "sliding"], default="fixed")
    args = parser.parse_args()
    limit = None if args.rate_limit == "none" else RateLimit.parse(args.rate_limit)
    asyncio.run(serve(limit, args.window))


if __name__ == "__main__":
    main()
