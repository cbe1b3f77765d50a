"""whop_async.taskiq against a real redis-server and taskiq-redis's RedisStreamBroker: the key is
fixed at enqueue time, workers send through one client, and a redelivered task is replayed."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
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
        doomed = stream_broker(redis_url, queue, consumer_name="doomed")
        task = register_notification_task(doomed, client_factory=client_factory(server, redis_url))
        await doomed.startup()
        keys = [await enqueue_notification(task, notification(i)) for i in range(4)]
        # The doomed worker takes every message and sends it, then dies before acknowledging.
        doomed.is_worker_process = True
        receiver = Receiver(doomed)
        messages = doomed.listen()
        for _ in keys:
            taken = await anext(messages)
            await receiver.callback(taken.data)  # plain bytes: never acknowledged
        await messages.aclose()
        await doomed.shutdown()
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
    await broker.shutdown()

    warnings = {r.getMessage() for r in whop_logs if r.levelno == logging.WARNING}
    assert all(message.startswith("Could not sweep abandoned") for message in warnings)
