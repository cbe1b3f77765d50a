"""One measured client run, in a fresh process: ``python _worker.py CONTENDER COUNT ...``.

The process pins itself to one core, imports its contender, sends a warm-up batch, then sends
``COUNT`` notifications with CPU time (user + sys of this process) and wall time taken around
the send alone. It prints one JSON object; peak RSS is the process's ``ru_maxrss``.

whop_async runs with ``rate_limit=None``: its default limiter keeps to Whop's 600 requests per
minute, which no other contender has (plain aiohttp and ``whop-sdk`` limit nothing), and which
would make 20,000 requests take 33 minutes. With it off, every contender sends as fast as it
can; each attempt still passes through the no-op ``Unlimited`` limiter and the batch's
observer (its counters and its stop).

``WHOP_BENCH_LOOP=uvloop`` runs the worker on uvloop (an application's choice, see
docs/performance.md), meant for ``bench_bulk.py --variant-env``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

__all__ = ["CONTENDERS", "MEMORY_CONTENDERS", "worker_command"]

API_KEY = "bench-key"
Item = dict[str, Any]
Send = Callable[[Iterable[Any]], Awaitable[int]]
Factory = Callable[[str, int], contextlib.AbstractAsyncContextManager[Send]]


def make_items(count: int, start: int = 0) -> Iterator[Item]:
    """Lazily yield ``count`` notifications as dicts of ``create()`` keywords."""
    for index in range(start, start + count):
        yield {
            "company_id": "biz_bench",
            "title": f"t{index}",
            "content": "Your weekly report is ready.",
            "user_ids": ["user_bench"],
        }


def make_params(count: int, start: int = 0) -> Iterator[Any]:
    """Lazily yield ``count`` whop_async ``NotificationCreateParams``."""
    from whop_async import NotificationCreateParams

    for item in make_items(count, start):
        yield NotificationCreateParams(**item)


@contextlib.asynccontextmanager
async def plain_aiohttp(base_url: str, concurrency: int) -> AsyncIterator[Send]:
    """What a careful user writes: one session, a semaphore, one task per item."""
    import aiohttp

    url = f"{base_url}/notifications"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    semaphore = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:

        async def post_one(item: Item) -> bool:
            async with semaphore, session.post(url, json=item, headers=headers) as response:
                response.raise_for_status()
                body = await response.json()
                return bool(body["success"])

        async def send(items: Iterable[Item]) -> int:
            results = await asyncio.gather(*(post_one(item) for item in items))
            return sum(results)

        yield send


@contextlib.asynccontextmanager
async def plain_aiohttp_workers(base_url: str, concurrency: int) -> AsyncIterator[Send]:
    """The same requests as ``plain_aiohttp`` from ``concurrency`` worker tasks, not a task each."""
    import aiohttp

    url = f"{base_url}/notifications"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession() as session:

        async def worker(items: Iterator[Item]) -> int:
            sent = 0
            for item in items:
                async with session.post(url, json=item, headers=headers) as response:
                    response.raise_for_status()
                    body = await response.json()
                    sent += bool(body["success"])
            return sent

        async def send(items: Iterable[Item]) -> int:
            shared = iter(items)
            return sum(await asyncio.gather(*(worker(shared) for _ in range(concurrency))))

        yield send


@contextlib.asynccontextmanager
async def whop_async_gather(base_url: str, concurrency: int) -> AsyncIterator[Send]:
    """``gather_notifications`` over one ``AsyncWhop``, defaults but for ``rate_limit=None``."""
    from whop_async import AsyncWhop, gather_notifications

    async with AsyncWhop(API_KEY, base_url=base_url, rate_limit=None) as client:

        async def send(items: Iterable[Any]) -> int:
            results = await gather_notifications(client, items, concurrency=concurrency)
            return sum(getattr(result, "success", False) is True for result in results)

        yield send


@contextlib.asynccontextmanager
async def whop_async_iter(base_url: str, concurrency: int) -> AsyncIterator[Send]:
    """``iter_notifications`` over one ``AsyncWhop`` (``rate_limit=None``), as outcomes come."""
    from whop_async import AsyncWhop, iter_notifications

    async with AsyncWhop(API_KEY, base_url=base_url, rate_limit=None) as client:

        async def send(items: Iterable[Any]) -> int:
            sent = 0
            async for outcome in iter_notifications(client, items, concurrency=concurrency):
                if outcome.error is not None:
                    raise outcome.error
                sent += outcome.ok
            return sent

        yield send


def _whop_sdk_factory(transport: str) -> Factory:
    @contextlib.asynccontextmanager
    async def factory(base_url: str, concurrency: int) -> AsyncIterator[Send]:
        from whop_sdk import AsyncWhop, DefaultAioHttpClient, DefaultAsyncHttpxClient
        from whop_sdk.environment import WhopEnvironment

        # With the aiohttp extra installed, whop-sdk's default client is the aiohttp shim, so
        # both are named here, built exactly as its own default (timeout 60 s, redirects on).
        http_class = DefaultAsyncHttpxClient if transport == "httpx" else DefaultAioHttpClient
        async with http_class() as http_client:
            client = AsyncWhop(
                token=API_KEY,
                environment=WhopEnvironment(api=base_url, vault=base_url),
                httpx_client=http_client,
                timeout=60,
            )
            semaphore = asyncio.Semaphore(concurrency)

            async def create_one(item: Item) -> bool:
                async with semaphore:
                    response = await client.notifications.create(
                        account_id=item["company_id"],
                        title=item["title"],
                        content=item["content"],
                        user_ids=item["user_ids"],
                    )
                    return response.success is True

            async def send(items: Iterable[Item]) -> int:
                return sum(await asyncio.gather(*(create_one(item) for item in items)))

            yield send

    return factory


CONTENDERS: dict[str, Factory] = {
    "plain-aiohttp": plain_aiohttp,
    "plain-aiohttp-workers": plain_aiohttp_workers,
    "whop_async": whop_async_gather,
    "whop-sdk-httpx": _whop_sdk_factory("httpx"),
    "whop-sdk-aiohttp": _whop_sdk_factory("aiohttp"),
}

#: Memory runs: the contender and how it is fed (dicts or whop_async params, both lazy).
MEMORY_CONTENDERS: dict[str, tuple[Factory, Callable[[int, int], Iterator[Any]]]] = {
    "gather_notifications": (whop_async_gather, make_params),
    "iter_notifications": (whop_async_iter, make_params),
    "plain task-per-item": (plain_aiohttp, make_items),
}


def worker_command(
    contender: str, count: int, *, base_url: str, concurrency: int, warmup: int, core: int | None
) -> list[str]:
    """The command that runs one contender in a fresh process, as ``main`` below reads it."""
    command = [sys.executable, os.path.abspath(__file__), contender, str(count)]
    command += ["--base-url", base_url, "--concurrency", str(concurrency), "--warmup", str(warmup)]
    if core is not None:
        command += ["--core", str(core)]
    return command


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(
    factory: Factory,
    items: Callable[[int, int], Iterator[Any]],
    *,
    base_url: str,
    count: int,
    concurrency: int,
    warmup: int,
) -> dict[str, float]:
    """Warm up, then send ``count`` items and time only that send."""
    async with factory(base_url, concurrency) as send:
        if warmup:
            await send(items(warmup, 0))
        wall_started, cpu_started = time.perf_counter(), _cpu_seconds()
        sent = await send(items(count, warmup))
        wall, cpu = time.perf_counter() - wall_started, _cpu_seconds() - cpu_started
    if sent != count:
        raise RuntimeError(f"only {sent} of {count} notifications succeeded")
    return {
        "count": count,
        "warmup": warmup,
        "wall_s": wall,
        "cpu_s": cpu,
        "requests_per_s": count / wall,
        "cpu_us_per_request": cpu / count * 1e6,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def main() -> None:
    """Parse the command line, pin to the client core, run one contender, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("contender", choices=[*CONTENDERS, *MEMORY_CONTENDERS])
    parser.add_argument("count", type=int)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--core", type=int, default=None)
    args = parser.parse_args()
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    items: Callable[[int, int], Iterator[Any]] = make_items
    if args.contender in CONTENDERS:
        factory = CONTENDERS[args.contender]
    else:
        factory, items = MEMORY_CONTENDERS[args.contender]
    run = asyncio.run
    if os.environ.get("WHOP_BENCH_LOOP") == "uvloop":
        import uvloop

        run = uvloop.run
    result = run(
        measure(
            factory,
            items,
            base_url=args.base_url,
            count=args.count,
            concurrency=args.concurrency,
            warmup=args.warmup,
        )
    )
    print(json.dumps({"contender": args.contender, **result}))


if __name__ == "__main__":
    main()
