"""whop_async.taskiq against a real redis-server and taskiq-redis's RedisStreamBroker: the key is
fixed at enqueue time, workers send through one client, a redelivered task is replayed, and a
``taskiq worker`` stopped with SIGTERM hands back at once what it took and did not start."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_fixtures import redis_server, redis_url, require, start_redis

require("taskiq_redis")

import redis.asyncio as aioredis  # noqa: E402
from taskiq import SmartRetryMiddleware  # noqa: E402
from taskiq.api import run_receiver_task  # noqa: E402
from taskiq.receiver import Receiver  # noqa: E402
from taskiq_redis import RedisStreamBroker  # noqa: E402

from whop_async import (  # noqa: E402
    AsyncWhop,
    Backoff,
    InvalidParamsError,
    NotificationCreateParams,
    RateLimit,
    derive_idempotency_key,
)
from whop_async.redis import RedisRateLimiter  # noqa: E402
from whop_async.taskiq import (  # noqa: E402
    NotificationTask,
    enqueue_notification,
    redeliver_abandoned,
    register_notification_task,
)
from whop_async.testing import WhopEmulator  # noqa: E402

__all__ = ["redis_server", "redis_url"]  # fixtures used by name

DEFAULT_BACKOFF = Backoff()
#: How long a worker's shutdown may take before the test fails, showing what was stuck.
SHUTDOWN_TIMEOUT = 10.0
TESTS_DIR = Path(__file__).resolve().parent
#: The drain test's workers: a message goes to another worker after this long (10 minutes)...
DRAIN_IDLE_TIMEOUT_MS = 600_000
#: ... and each of its steps fails past this, so the test ends within a minute, far less:
#: none of its messages can have waited for that.
DRAIN_STEP_TIMEOUT = 15.0


def notification(index: int) -> dict[str, Any]:
    return {"account_id": "biz_queue", "title": f"t{index}", "content": "hello"}


def client_factory(
    server: WhopEmulator, redis_url: str, backoff: Backoff = DEFAULT_BACKOFF
) -> Callable[[], AsyncWhop]:
    def make() -> AsyncWhop:
        limiter = RedisRateLimiter(redis_url, name="taskiq", limit=RateLimit(50, per=1.0))
        return AsyncWhop(
            server.api_key, base_url=server.base_url, rate_limit=limiter, backoff=backoff
        )

    return make


def stream_broker(redis_url: str, queue: str, **options: Any) -> RedisStreamBroker:
    options.setdefault("xread_block", 100)
    return RedisStreamBroker(redis_url, queue_name=queue, **options)


@contextlib.asynccontextmanager
async def running_worker(broker: RedisStreamBroker) -> AsyncIterator[None]:
    """A worker in this process, as ``taskiq worker`` runs one, stopped and shut down after.

    Every step of the stop is bounded: a stop that hangs fails the test with the stacks of the
    tasks still pending, rather than hanging the test run.
    """
    receiving = asyncio.ensure_future(run_receiver_task(broker, run_startup=True))
    try:
        yield
    finally:
        receiving.cancel()
        # taskiq's receiver can miss a cancellation while the broker's read of the stream is
        # in flight; closing the broker's connections ends that read.
        await asyncio.wait([receiving], timeout=2)
        await finishes(broker.shutdown(), "the broker's shutdown (the worker's stop included)")
        with contextlib.suppress(asyncio.CancelledError):
            await finishes(receiving, "taskiq's receiver, cancelled and its broker shut down")


async def finishes(awaitable: Awaitable[object], what: str) -> None:
    """Await ``awaitable`` for up to ``SHUTDOWN_TIMEOUT`` seconds; fail the test past that."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait([task], timeout=SHUTDOWN_TIMEOUT)
    if not done:
        pytest.fail(f"{what} did not finish in {SHUTDOWN_TIMEOUT:g} s:\n{pending_stacks()}")
    task.result()


def pending_stacks() -> str:
    """Where each other pending task of the running loop waits, for a failure message."""
    report = io.StringIO()
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task():
            print(repr(task), file=report)
            task.print_stack(file=report)
    return report.getvalue()


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def queued_messages(redis_url: str, queue: str) -> list[dict[str, Any]]:
    async with aioredis.Redis.from_url(redis_url) as redis:
        entries = await redis.xrange(queue)
    return [json.loads(fields[b"data"]) for _, fields in entries]


def drain_worker_broker() -> RedisStreamBroker:
    """The broker of a ``taskiq worker`` process of the drain test (which imports this module).

    It reads every queued message in its first read (``xread_count``), so that once it is
    stopped most of them are taken and not started; Redis, queue and server come from the
    environment the test sets.
    """
    broker = stream_broker(
        os.environ["WHOP_ASYNC_TEST_REDIS_URL"],
        os.environ["WHOP_ASYNC_TEST_QUEUE"],
        idle_timeout=DRAIN_IDLE_TIMEOUT_MS,
        xread_count=1000,
        # As docs/scaling.md advises before Python 3.12: an idle worker can otherwise miss the
        # stop of its stream read, and never exit.
        socket_timeout=None,
    )

    def make_client() -> AsyncWhop:
        return AsyncWhop(
            os.environ["WHOP_API_KEY"], base_url=os.environ["WHOP_BASE_URL"], rate_limit=None
        )

    register_notification_task(broker, client_factory=make_client)
    return broker


@contextlib.contextmanager
def taskiq_worker(environment: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``taskiq worker`` (one worker process, 5 tasks at a time) in a session of its own.

    On leaving, whatever is left of the session (the CLI and its worker process) is killed, so
    a failing test leaves no process behind.
    """
    command = [
        sys.executable, "-m", "taskiq", "worker", "test_taskiq:drain_worker_broker",
        "--app-dir", str(TESTS_DIR), "--workers", "1", "--max-async-tasks", "5",
    ]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - this interpreter's taskiq
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **environment},
            start_new_session=True,
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(SHUTDOWN_TIMEOUT)


async def exits(process: subprocess.Popen[bytes], log: Path) -> int:
    """Wait for ``process`` to exit; fail the test with its log past ``SHUTDOWN_TIMEOUT``."""
    with contextlib.suppress(asyncio.TimeoutError):
        await until(lambda: process.poll() is not None, SHUTDOWN_TIMEOUT)
    if process.returncode is None:
        pytest.fail(f"the worker did not exit after SIGTERM:\n{log_tail(log)}")
    return process.returncode


def log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def handed_back(log: Path) -> int:
    """How many notifications the worker's log says it handed back on shutdown."""
    found = re.findall(r"Handed back (\d+) notifications", log.read_text(errors="replace"))
    return sum(int(count) for count in found)


async def pending_count(redis_url: str, queue: str) -> int:
    async with aioredis.Redis.from_url(redis_url) as redis:
        count: int = (await redis.xpending(queue, "taskiq"))["pending"]
    return count


@pytest.fixture
def queue() -> str:
    return f"notifications-{uuid.uuid4().hex[:8]}"


async def test_a_worker_sends_what_was_queued_with_the_key_fixed_at_enqueue(
    redis_url: str, queue: str
) -> None:
    async with WhopEmulator() as server:
        enqueuer = stream_broker(redis_url, queue)
        task = register_notification_task(enqueuer, client_factory=AsyncWhop)
        await enqueuer.startup()
        keys = [
            await enqueue_notification(task, notification(i), source_id=f"order-{i}")
            for i in range(5)
        ]
        queued = await queued_messages(redis_url, queue)
        await enqueuer.shutdown()

        worker = stream_broker(redis_url, queue)
        register_notification_task(worker, client_factory=client_factory(server, redis_url))
        async with running_worker(worker):
            await until(lambda: len(server.notifications) == 5)

    assert keys == [derive_idempotency_key(f"order-{i}") for i in range(5)]
    assert [message["args"][0]["idempotency_key"] for message in queued] == keys
    assert sorted(server.idempotency_keys()) == sorted(keys)  # type: ignore[type-var]
    assert server.request_count == 5


async def test_a_redelivered_task_is_replayed_by_whop_not_sent_twice(
    redis_url: str, queue: str
) -> None:
    async with WhopEmulator() as server:
        made: list[AsyncWhop] = []
        make_client = client_factory(server, redis_url)

        def make_and_keep() -> AsyncWhop:
            made.append(make_client())
            return made[-1]

        doomed = stream_broker(redis_url, queue, consumer_name="doomed")
        task = register_notification_task(doomed, client_factory=make_and_keep)
        await doomed.startup()
        keys = [await enqueue_notification(task, notification(i)) for i in range(4)]
        # The doomed worker takes every message and sends it, then dies before acknowledging:
        # its worker shutdown, which would hand the messages back, never runs.
        doomed.is_worker_process = True
        receiver = Receiver(doomed)
        messages = doomed.listen()
        for _ in keys:
            taken = await anext(messages)
            await receiver.callback(taken.data)  # plain bytes: never acknowledged
        await messages.aclose()
        await die(doomed, made)
        assert server.request_count == 4

        survivor = stream_broker(redis_url, queue, consumer_name="survivor", idle_timeout=300)
        register_notification_task(survivor, client_factory=client_factory(server, redis_url))
        async with running_worker(survivor):
            await until(lambda: server.request_count == 8)
            async with aioredis.Redis.from_url(redis_url) as redis:
                await until_acknowledged(redis, queue)

    assert len(server.notifications) == 4
    assert sorted(server.idempotency_keys()) == sorted(keys)  # type: ignore[type-var]
    assert server.status_counts == {200: 8}


async def die(broker: RedisStreamBroker, clients: list[AsyncWhop]) -> None:
    """Stop a worker's broker as if its process had been killed: no worker shutdown runs.

    Only what the test process would leak otherwise is closed: the clients and the broker's
    connections.
    """
    broker.is_worker_process = False
    await broker.shutdown()
    for client in clients:
        await client.close()
        await client.rate_limiter.aclose()


async def test_a_send_that_can_succeed_later_is_retried_with_the_same_key(
    redis_url: str, queue: str
) -> None:
    async with WhopEmulator() as server:
        server.fail_next(3, status=500)  # every attempt of the task's first run
        broker = stream_broker(redis_url, queue).with_middlewares(
            SmartRetryMiddleware(default_retry_count=2, default_delay=0)
        )
        task = register_notification_task(
            broker, client_factory=client_factory(server, redis_url, Backoff.instant())
        )
        await broker.startup()
        key = await enqueue_notification(task, notification(0))
        async with running_worker(broker):
            await until(lambda: len(server.notifications) == 1)

    assert server.idempotency_keys() == [key]
    assert server.status_counts == {500: 3, 200: 1}


async def test_a_worker_stopped_with_sigterm_finishes_what_it_started_and_hands_back_the_rest(
    redis_url: str, queue: str, tmp_path: Path
) -> None:
    items, stop_after = 300, 100
    async with WhopEmulator(rate_limit=None, response_delay=0.1) as server:  # 50 a second
        enqueuer = stream_broker(redis_url, queue)
        task = register_notification_task(enqueuer, client_factory=AsyncWhop)
        await enqueuer.startup()
        keys = [await enqueue_notification(task, notification(i)) for i in range(items)]
        await enqueuer.shutdown()
        environment = {
            "WHOP_ASYNC_TEST_REDIS_URL": redis_url,
            "WHOP_ASYNC_TEST_QUEUE": queue,
            "WHOP_API_KEY": str(server.api_key),
            "WHOP_BASE_URL": server.base_url,
        }

        first_log = tmp_path / "first-worker.log"
        with taskiq_worker(environment, first_log) as first:
            await until(lambda: len(server.notifications) >= stop_after, DRAIN_STEP_TIMEOUT)
            first.send_signal(signal.SIGTERM)
            assert await exits(first, first_log) == 0, log_tail(first_log)
        stored_by_first = len(server.notifications)
        pending_after_first = await pending_count(redis_url, queue)

        second_log = tmp_path / "second-worker.log"
        with taskiq_worker(environment, second_log) as second:
            with contextlib.suppress(asyncio.TimeoutError):  # the asserts below say what is missing
                await until(lambda: len(server.notifications) == items, DRAIN_STEP_TIMEOUT)
            second.send_signal(signal.SIGTERM)
            assert await exits(second, second_log) == 0, log_tail(second_log)

    # The first worker took all 300 in one read and stopped part way: it finished and
    # acknowledged what it had started and handed back the rest, which the second worker
    # read at once (no sweep or reclaim runs in under 10 minutes).
    assert stop_after <= stored_by_first < items
    assert pending_after_first == 0, log_tail(first_log)
    assert handed_back(first_log) == items - stored_by_first
    # Each of the 300 stored exactly once, each sent once: none started twice.
    assert len(server.notifications) == items, log_tail(second_log)
    assert sorted(server.idempotency_keys()) == sorted(keys)  # type: ignore[type-var]
    assert len(set(keys)) == items
    assert server.request_count == items
    assert server.status_counts == {200: items}
    assert await pending_count(redis_url, queue) == 0


async def until_acknowledged(redis: aioredis.Redis, queue: str) -> None:
    async def poll() -> None:
        while (await redis.xpending(queue, "taskiq"))["pending"]:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), 5.0)


async def test_redeliver_abandoned_moves_only_messages_idle_long_enough(
    redis_url: str, queue: str
) -> None:
    broker = stream_broker(redis_url, queue, consumer_name="slow", idle_timeout=60_000)
    task = register_notification_task(broker, client_factory=AsyncWhop)
    await broker.startup()
    for index in range(3):
        await enqueue_notification(task, notification(index))
    messages = broker.listen()
    for _ in range(3):
        await anext(messages)
    await messages.aclose()
    try:
        assert await redeliver_abandoned(broker) == 0  # not idle for a minute yet
        assert await redeliver_abandoned(broker, min_idle=0) == 3
        async with aioredis.Redis.from_url(redis_url) as redis:
            assert (await redis.xpending(queue, "taskiq"))["pending"] == 0
            assert await redis.xlen(queue) == 3  # back on the stream, once each
    finally:
        await broker.shutdown()


async def test_a_stopping_worker_hands_back_only_what_its_consumer_holds_unacknowledged(
    redis_url: str, queue: str, whop_logs: list[logging.LogRecord]
) -> None:
    stopping = stream_broker(redis_url, queue, consumer_name="stopping", xread_count=150)
    task = register_notification_task(stopping, client_factory=AsyncWhop)
    await stopping.startup()
    keys = [await enqueue_notification(task, notification(i)) for i in range(153)]
    other = stream_broker(redis_url, queue, consumer_name="other", xread_count=3)
    taken = await take(stopping, 150)  # more than one run of the script
    held_by_other = await take(other, 3)
    for message in taken[:10]:
        await message.ack()  # finished
    async with aioredis.Redis.from_url(redis_url) as redis:
        held = await redis.xpending_range(queue, "taskiq", "-", "+", 200, "stopping")
        await redis.xdel(queue, held[-1]["message_id"])  # gone, as maxlen does: the 150th

        stopping.is_worker_process = True
        await stopping.shutdown()

        assert await redis.xpending_range(queue, "taskiq", "-", "+", 200, "stopping") == []
        assert len(await redis.xpending_range(queue, "taskiq", "-", "+", 200, "other")) == 3
        assert await redis.xlen(queue) == 153 - 1
    reader = stream_broker(redis_url, queue, consumer_name="next")
    handed_back = await take(reader, 139)  # read as new messages, at once
    await reader.shutdown()
    await other.shutdown()

    def key(message: Any) -> str:
        return str(json.loads(message.data)["args"][0]["idempotency_key"])

    assert sorted(map(key, handed_back)) == sorted(keys[10:149])
    assert sorted(map(key, held_by_other)) == sorted(keys[150:])
    assert [r.getMessage() for r in whop_logs if r.levelno == logging.INFO] == [
        "Handed back 139 notifications this worker took and did not start"
    ]


async def take(broker: RedisStreamBroker, count: int) -> list[Any]:
    """Read ``count`` messages as ``broker``'s consumer, leaving them unacknowledged."""
    messages = broker.listen()
    try:
        return [await asyncio.wait_for(anext(messages), 5.0) for _ in range(count)]
    finally:
        await messages.aclose()


async def test_enqueue_refuses_bad_notifications_and_conflicting_keys(
    redis_url: str, queue: str
) -> None:
    broker = stream_broker(redis_url, queue)
    task = register_notification_task(broker, client_factory=AsyncWhop)
    await broker.startup()
    try:
        with pytest.raises(InvalidParamsError, match="exactly one"):
            await enqueue_notification(task, {"title": "t", "content": "c"})
        with pytest.raises(InvalidParamsError, match="not both"):
            await enqueue_notification(task, notification(0), idempotency_key="k", source_id=1)
        with pytest.raises(InvalidParamsError, match="differs"):
            await enqueue_notification(
                task, {**notification(0), "idempotency_key": "a"}, idempotency_key="b"
            )
        with pytest.raises(InvalidParamsError, match="NotificationCreateParams"):
            await enqueue_notification(task, ["not", "a", "notification"])  # type: ignore[arg-type]
        with pytest.raises(InvalidParamsError, match="JSON values"):
            await enqueue_notification(task, {**notification(0), "extra_body": {"at": object()}})
        assert await queued_messages(redis_url, queue) == []

        params = NotificationCreateParams(
            account_id="biz_queue", title="t", content="c", user_ids=["user_1"]
        )
        given = await enqueue_notification(task, params, idempotency_key="mine")
        kept = await enqueue_notification(task, {**notification(1), "idempotency_key": "theirs"})
        drawn = await enqueue_notification(task, notification(2))
    finally:
        await broker.shutdown()

    queued = [message["args"][0] for message in await queued_messages(redis_url, queue)]
    assert (given, kept) == ("mine", "theirs")
    assert len(drawn) == 32
    assert queued[0] == {
        "account_id": "biz_queue",
        "title": "t",
        "content": "c",
        "user_ids": ["user_1"],
        "idempotency_key": "mine",
    }


async def test_a_message_without_a_key_is_refused_by_the_worker(redis_url: str) -> None:
    made: list[AsyncWhop] = []
    broker = stream_broker(redis_url, "unused")
    task: NotificationTask = register_notification_task(broker, client_factory=made.append)  # type: ignore[arg-type]
    with pytest.raises(InvalidParamsError, match="enqueue_notification"):
        await task.original_func(notification(0))
    assert made == []
    await broker.shutdown()


def test_register_checks_its_arguments(redis_url: str) -> None:
    with pytest.raises(InvalidParamsError, match="broker"):
        register_notification_task(object(), client_factory=AsyncWhop)  # type: ignore[arg-type]
    with pytest.raises(InvalidParamsError, match="client_factory"):
        register_notification_task(stream_broker(redis_url, "q"), client_factory=None)  # type: ignore[arg-type]


async def test_a_client_factory_must_make_an_asyncwhop(redis_url: str) -> None:
    broker = stream_broker(redis_url, "unused")
    task = register_notification_task(broker, client_factory=object)  # type: ignore[arg-type]
    with pytest.raises(InvalidParamsError, match="must return an AsyncWhop"):
        await task.original_func({**notification(0), "idempotency_key": "k"})
    await broker.shutdown()


async def test_a_worker_whose_redis_went_away_warns_and_keeps_sweeping(
    tmp_path: Path, whop_logs: list[logging.LogRecord]
) -> None:
    server = start_redis(tmp_path)
    broker = stream_broker(f"{server.url}/0", "swept", idle_timeout=100)
    register_notification_task(broker, client_factory=AsyncWhop)
    broker.is_worker_process = True
    await broker.startup()  # the worker's startup starts the sweeper
    server.stop()
    await until(lambda: len([r for r in whop_logs if r.levelno == logging.WARNING]) >= 2)
    await broker.shutdown()  # nothing can be handed back either

    warnings = [r.getMessage() for r in whop_logs if r.levelno == logging.WARNING]
    assert all(message.startswith("Could not sweep abandoned") for message in warnings[:-1])
    assert warnings[-1].startswith("Could not hand back the notifications this worker took")
