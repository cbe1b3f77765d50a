"""Many processes, one API key: the shared rate limit and the taskiq fan-out, measured.

Against a ``WhopEmulator`` limiting as Whop documents, time-scaled to 60 requests per 6 s per key
(fixed and sliding window), running as a task of this process on 127.0.0.1, with a private
``redis-server`` on a free port of 127.0.0.1:

* (a) 4 client processes send 300 notifications in all (75 each, ``gather_notifications``), each
  through a ``RedisRateLimiter`` matching the server; then the same with a ``LocalRateLimiter``
  per process (no sharing) for contrast.
* (b) taskiq: 300 notifications queued on a ``RedisStreamBroker`` (keys fixed at enqueue time),
  2 worker processes sending through the shared limiter; one worker is killed with SIGKILL once
  100 have been stored. Every notification must be stored exactly once, none lost.
* (c) as (a), but each ``RedisRateLimiter`` keeps its *default* limit, Whop's documented 600
  per 60 s, against the server's 60 per 6 s: a tenth of the window, the same rate. The four
  processes must learn the server's budget from its 429s, together, through Redis.

Prints a Markdown report and PASS/FAIL per target; writes the runs, with every request the
server saw and its answer, to ``results/shared_limit.json``. ``--charts DIRECTORY`` also draws
(a) without and with the shared limiter, as the server saw them, to
``scaling-local-limiters.svg`` and ``scaling-shared-limiter.svg`` (needs matplotlib). Needs
``redis-server`` on PATH and the ``redis`` and ``taskiq`` extras::

    python benchmarks/shared_limit.py [--only a b c] [--windows fixed sliding] [--check]
                                      [--charts DIRECTORY]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from _limited_server import request_timeline

from whop_async import AsyncWhop, RateLimit, gather_notifications
from whop_async.redis import RedisRateLimiter
from whop_async.testing import WhopEmulator, most_in_any_window

HERE = Path(__file__).resolve().parent
LIMIT = RateLimit(60, per=6.0)
ITEMS = 300
PROCESSES = 4
WORKERS = 2
KILL_AFTER = 100
#: Workers' RedisStreamBroker: a dead worker's messages go back after this long (ms)...
IDLE_TIMEOUT_MS = 10_000
#: ... which must exceed the longest a message stays in a live worker's hands: its batch of
#: XREADGROUP_COUNT plus MAX_ASYNC_TASKS running, at its share of 10 a second (~3 s here).
XREADGROUP_COUNT = 5
MAX_ASYNC_TASKS = 10
RUN_TIMEOUT = 180.0

Run = dict[str, Any]


def progress(message: str) -> None:
    """One progress line on stderr, so that stdout holds only the report."""
    print(message, file=sys.stderr, flush=True)


def notification(index: int) -> dict[str, Any]:
    return {"account_id": "biz_scaling", "title": f"n{index}", "content": "hello"}


# The private Redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server on a free port of 127.0.0.1, without persistence, stopped at the end."""
    executable = shutil.which("redis-server")
    if executable is None:
        sys.exit("redis-server is not on PATH: apt-get install redis-server")
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        process = subprocess.Popen(
            [
                executable,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                directory,
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        sys.exit("redis-server did not start")
                    time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(10)


async def flush(redis_url: str) -> None:
    from redis.asyncio import Redis

    async with Redis.from_url(redis_url) as redis:
        await redis.flushall()


def server_figures(server: WhopEmulator, count: int) -> Run:
    """What the emulator saw: requests, 429s, stored notifications, keys, pace."""
    arrivals = [request.received_at for request in server.requests]
    stored = len(server.notifications)
    keys = server.idempotency_keys()
    rate_limited = server.status_counts.get(429, 0)
    first = min(arrivals, default=0.0)
    span = max(arrivals) - first if arrivals else 0.0
    replayed = server.request_count - rate_limited - stored
    # Statuses recovered from the keys: a replayed request makes the first 200 of its key look
    # like a 429 (part (b) only, when a kill catches a send that was not acknowledged).
    timeline = request_timeline(server)
    if sum(status == 429 for _, status in timeline) != rate_limited + replayed:
        progress("warning: the 429s recovered from the keys do not match the server's count")
    return {
        "requests": server.request_count,
        "rate_limited": rate_limited,
        "share_429": rate_limited / server.request_count if server.request_count else 0.0,
        "stored": stored,
        "distinct_keys": len(set(keys)),
        "replayed": replayed,
        "delivered_once": stored == count and len(set(keys)) == count and None not in keys,
        "span_s": span,
        # The windows the send used: a perfect client fills every one, 1.0x.
        "rate_ratio": stored / (span + LIMIT.per) / LIMIT.rate if arrivals else 0.0,
        "most_in_window": most_in_any_window(arrivals, LIMIT.per),
        # (seconds since the first request, status) per request, for the charts
        "server_requests": [(at - first, status) for at, status in timeline],
    }


# (a) processes sharing one limit


async def run_client(args: argparse.Namespace) -> None:
    """One client process of (a): send ``--count`` items, print what failed as JSON."""
    if args.redis == "none":
        limiter: Any = LIMIT
    elif args.default_limit:
        limiter = RedisRateLimiter(args.redis, name="bench")  # Whop's 600 per 60 s
    else:
        limiter = RedisRateLimiter(args.redis, limit=LIMIT, name="bench")
    items = [notification(index) for index in range(args.first, args.first + args.count)]
    await asyncio.sleep(max(0.0, args.start_at - time.time()))
    async with AsyncWhop(args.api_key, base_url=args.base_url, rate_limit=limiter) as client:
        outcomes = await gather_notifications(client, items, return_exceptions=True)
    if not isinstance(limiter, RateLimit):
        await limiter.aclose()
    errors = [repr(outcome) for outcome in outcomes if isinstance(outcome, BaseException)]
    print(json.dumps({"failures": len(errors), "errors": errors[:3]}))


async def shared_run(
    redis_url: str, window: str, shared: bool, *, default_limit: bool = False
) -> Run:
    await flush(redis_url)
    async with WhopEmulator(rate_limit=LIMIT, rate_limit_window=window) as server:  # type: ignore[arg-type]
        share = ITEMS // PROCESSES
        start_at = time.time() + 2.0
        clients = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "client",
                "--base-url",
                server.base_url,
                "--api-key",
                server.api_key or "",
                "--redis",
                redis_url if shared else "none",
                "--first",
                str(index * share),
                "--count",
                str(share),
                "--start-at",
                str(start_at),
                *(["--default-limit"] if default_limit else []),
                stdout=subprocess.PIPE,
            )
            for index in range(PROCESSES)
        ]
        outputs = await asyncio.wait_for(
            asyncio.gather(*(client.communicate() for client in clients)), RUN_TIMEOUT
        )
        run = server_figures(server, ITEMS)
    reports = [json.loads(stdout) for stdout, _ in outputs]
    if default_limit:
        label = "RedisRateLimiter (shared), default 600/60 s"
    else:
        label = "RedisRateLimiter (shared)" if shared else "LocalRateLimiter per process"
    run |= {
        "part": "c" if default_limit else "a",
        "window": window,
        "limiter": label,
        "failures": sum(report["failures"] for report in reports),
        "errors": [error for report in reports for error in report["errors"]][:3],
    }
    return run


# (b) taskiq workers, one killed


def make_broker(redis_url: str, queue: str) -> Any:
    from taskiq_redis import RedisStreamBroker

    return RedisStreamBroker(
        redis_url,
        queue_name=queue,
        idle_timeout=IDLE_TIMEOUT_MS,
        unacknowledged_lock_timeout=5,
        xread_count=XREADGROUP_COUNT,
        xread_block=500,
    )


async def run_worker(args: argparse.Namespace) -> None:
    """One worker process of (b), as ``taskiq worker`` runs one, until SIGTERM (or SIGKILL)."""
    from taskiq.api import run_receiver_task

    from whop_async.taskiq import register_notification_task

    def make_client() -> AsyncWhop:
        limiter = RedisRateLimiter(args.redis, limit=LIMIT, name="bench")
        return AsyncWhop(args.api_key, base_url=args.base_url, rate_limit=limiter)

    broker = make_broker(args.redis, args.queue)
    register_notification_task(broker, client_factory=make_client)
    receiving = asyncio.ensure_future(
        run_receiver_task(broker, run_startup=True, max_async_tasks=MAX_ASYNC_TASKS)
    )
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, receiving.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await receiving
    await broker.shutdown()


async def until(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


@contextlib.asynccontextmanager
async def workers(
    server: WhopEmulator, redis_url: str, queue: str
) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    started = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "worker",
            "--base-url",
            server.base_url,
            "--api-key",
            server.api_key or "",
            "--redis",
            redis_url,
            "--queue",
            queue,
        )
        for _ in range(WORKERS)
    ]
    try:
        yield started
    finally:
        for process in started:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in started:
            await asyncio.wait_for(process.wait(), 30)


async def taskiq_run(redis_url: str, window: str) -> Run:
    from whop_async.taskiq import enqueue_notification, register_notification_task

    await flush(redis_url)
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    async with WhopEmulator(rate_limit=LIMIT, rate_limit_window=window) as server:  # type: ignore[arg-type]
        broker = make_broker(redis_url, queue)
        task = register_notification_task(broker, client_factory=AsyncWhop)
        await broker.startup()
        for index in range(ITEMS):
            await enqueue_notification(task, notification(index), source_id=f"bench-{index}")
        await broker.shutdown()
        started = time.monotonic()
        async with workers(server, redis_url, queue) as processes:
            await until(lambda: len(server.notifications) >= KILL_AFTER, RUN_TIMEOUT)
            processes[0].send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            stored_at_kill = len(server.notifications)
            finished = await until(lambda: len(server.notifications) >= ITEMS, RUN_TIMEOUT)
            finished_at = time.monotonic()
            await asyncio.sleep(2.0)  # anything sent twice would arrive by now
            pending = await pending_messages(redis_url, queue)
        run = server_figures(server, ITEMS)
    run |= {
        "part": "b",
        "window": window,
        "limiter": "taskiq, 2 workers, RedisRateLimiter (shared)",
        "failures": ITEMS - run["stored"],
        "finished": finished,
        "stored_at_kill": stored_at_kill,
        "kill_at_s": killed_at - started,
        "wall_s": finished_at - started,
        "after_kill_s": finished_at - killed_at,
        "pending_after": pending,
    }
    return run


async def pending_messages(redis_url: str, queue: str) -> int:
    from redis.asyncio import Redis

    async with Redis.from_url(redis_url) as redis:
        summary = await redis.xpending(queue, "taskiq")
    return int(summary["pending"])


# Report


def targets(run: Run) -> list[tuple[str, bool]]:
    if run["part"] == "a" and "shared" not in run["limiter"]:
        return []  # the contrast
    checks = [
        ("zero failures", run["failures"] == 0),
        ("every item delivered once", run["delivered_once"]),
    ]
    if run["part"] == "a":
        checks += [
            ("429s <= 2% of requests", run["share_429"] <= 0.02),
            ("rate >= 0.9x allowed", run["rate_ratio"] >= 0.9),
        ]
    elif run["part"] == "c":
        checks += [
            ("429s <= 10% of requests", run["share_429"] <= 0.10),
            ("rate >= 0.9x allowed", run["rate_ratio"] >= 0.9),
        ]
    else:
        checks += [
            ("stored = distinct keys = 300", run["stored"] == run["distinct_keys"] == ITEMS),
            ("nothing left pending", run["pending_after"] == 0),
        ]
    return checks


def report(runs: list[Run]) -> str:
    lines = [
        f"Server: WhopEmulator, {LIMIT.requests} per {LIMIT.per:g} s per key, 429 with the wait "
        "only in its message.",
        "",
        "| part | window | limiter | failures | requests | 429s | 429 share | stored | "
        "distinct keys | replayed | most in any 6 s | rate vs allowed |",
        "|:--|:--|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for run in runs:
        lines.append(
            f"| {run['part']} | {run['window']} | {run['limiter']} | {run['failures']} | "
            f"{run['requests']} | {run['rate_limited']} | {run['share_429']:.1%} | "
            f"{run['stored']} | {run['distinct_keys']} | {run['replayed']} | "
            f"{run['most_in_window']} | {run['rate_ratio']:.2f}x |"
        )
    for run in runs:
        if run["part"] == "b":
            lines.append(
                f"\n(b) {run['window']}: worker 1 SIGKILLed at {run['kill_at_s']:.1f} s with "
                f"{run['stored_at_kill']} stored; all {run['stored']} stored "
                f"{run['after_kill_s']:.1f} s later ({run['wall_s']:.1f} s in all); "
                f"{run['pending_after']} messages left pending."
            )
    lines.append("")
    for run in runs:
        for name, met in targets(run):
            verdict = "PASS" if met else "FAIL"
            lines.append(f"- {verdict} ({run['part']}, {run['window']}): {name}")
    return "\n".join(lines)


#: The charts: (file name, limiter of the part (a) run, title).
CHARTS = (
    (
        "scaling-local-limiters",
        "LocalRateLimiter per process",
        "4 processes, each its own limit of 60 per 6 s",
    ),
    (
        "scaling-shared-limiter",
        "RedisRateLimiter (shared)",
        "4 processes sharing a RedisRateLimiter",
    ),
)


def draw_charts(runs: Sequence[Run], directory: Path) -> list[Path]:
    """Draw the (a) runs of ``CHARTS`` as the server saw them (the sliding window's when there
    is one: any 6 s of it holds at most 60 accepted requests, whatever the bins), to
    ``directory``."""
    import _charts

    charts = []
    for name, limiter, title in CHARTS:
        chosen = [run for run in runs if run["part"] == "a" and run["limiter"] == limiter]
        chosen.sort(key=lambda run: run["window"] != "sliding")
        if chosen:
            charts.append(
                _charts.Chart(
                    name=name,
                    title=f"{title}, {chosen[0]['window']} window",
                    requests=chosen[0]["server_requests"],
                    allowed_rate=LIMIT.rate,
                    allowed_label=f"allowed: {LIMIT.requests} per {LIMIT.per:g} s",
                    bin_s=LIMIT.per,
                )
            )
    return _charts.write_charts(charts, directory)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command")
    client = commands.add_parser("client", help="internal: one client process of (a)")
    worker = commands.add_parser("worker", help="internal: one worker process of (b)")
    for sub in (client, worker):
        sub.add_argument("--base-url", required=True)
        sub.add_argument("--api-key", required=True)
        sub.add_argument("--redis", required=True)
    client.add_argument("--first", type=int, required=True)
    client.add_argument("--count", type=int, required=True)
    client.add_argument("--start-at", type=float, required=True)
    client.add_argument("--default-limit", action="store_true", help="Whop's 600/60 s")
    worker.add_argument("--queue", required=True)
    parser.add_argument("--only", nargs="+", choices=["a", "b", "c"], default=["a", "b", "c"])
    parser.add_argument("--windows", nargs="+", choices=["fixed", "sliding"])
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "shared_limit.json")
    parser.add_argument("--charts", type=Path, metavar="DIRECTORY", help="draw SVG charts there")
    args = parser.parse_args(argv)
    if args.charts and importlib.util.find_spec("matplotlib") is None:
        parser.error("--charts needs matplotlib: pip install -r benchmarks/requirements.txt")
    args.windows = args.windows or ["fixed", "sliding"]
    return args


async def measure(args: argparse.Namespace, redis_url: str) -> list[Run]:
    runs = []
    for window in args.windows:
        if "a" in args.only:
            for shared in (True, False):
                progress(f"(a) {window} window, {'shared' if shared else 'local'} limiters...")
                runs.append(await shared_run(redis_url, window, shared))
        if "b" in args.only:
            progress(f"(b) {window} window, taskiq workers, one killed...")
            runs.append(await taskiq_run(redis_url, window))
        if "c" in args.only:
            progress(f"(c) {window} window, shared limiters at the default limit...")
            runs.append(await shared_run(redis_url, window, True, default_limit=True))
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "client":
        asyncio.run(run_client(args))
        return 0
    if args.command == "worker":
        asyncio.run(run_worker(args))
        return 0
    with private_redis() as redis_url:
        started = time.monotonic()
        runs = asyncio.run(measure(args, redis_url))
    print(report(runs))
    print(f"\n{len(runs)} runs in {time.monotonic() - started:.0f} s on {os.cpu_count()} CPUs.")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps({"at": datetime.datetime.now(datetime.timezone.utc).isoformat(), "runs": runs})
    )
    if args.charts:
        for path in draw_charts(runs, args.charts):
            progress(f"chart written to {path}")
    missed = [name for run in runs for name, met in targets(run) if not met]
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
