"""Fan notifications out over taskiq workers, sent once each however often a task is delivered.

A service enqueues notifications from anywhere (a web handler, a cron job); worker processes
send them, each through one shared ``AsyncWhop`` and, across processes, one shared
``RedisRateLimiter``. With taskiq-redis's ``RedisStreamBroker`` the queue is a Redis stream whose
messages are acknowledged only after the send: a worker that dies leaves its messages pending,
and another worker takes them over::

    broker = RedisStreamBroker(REDIS_URL, idle_timeout=600_000, unacknowledged_lock_timeout=30)
    send_notification = register_notification_task(broker, client_factory=make_client)

    await broker.startup()                  # in the enqueuing process, once
    await enqueue_notification(send_notification, {...}, source_id=order.id)

**The idempotency key is fixed when a notification is enqueued** (``source_id`` derives it from
your own id, else a random one is drawn) and travels in the message. A task delivered twice (its
worker died after sending but before acknowledging, or it ran longer than ``idle_timeout``) sends
the same key again, and Whop replays the first answer instead of notifying twice, for 24 hours.

**Abandoned messages.** taskiq-redis claims other consumers' pending messages only right after a
read that found new ones, so on a quiet stream a dead worker's messages would wait for the next
enqueue. Workers started with ``register_notification_task`` also sweep: every half
``idle_timeout``, one atomic script moves messages pending longer than ``idle_timeout`` back to
the end of the stream (``redeliver_abandoned``).

**Draining.** Stopped with SIGTERM, ``taskiq worker`` reads no more messages, waits for the tasks
it has started (``--wait-tasks-timeout``), then shuts the broker down. There, workers of
``register_notification_task`` hand back at once what their consumer still holds unacknowledged:
the rest of the batch taskiq-redis read (``xread_count``) and never started. The same kind of
atomic script re-adds each such message at the end of the stream, so another worker reads it
right away, not after ``idle_timeout``. Each worker process therefore needs a consumer of its
own: leave the broker's ``consumer_name`` unset (a new UUID per process).

Needs the ``taskiq`` extra: ``pip install 'whop-async[taskiq]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Final, TypeAlias

import attrs

try:
    from redis.asyncio import Redis
    from redis.exceptions import RedisError
    from taskiq import AsyncBroker, AsyncTaskiqDecoratedTask, TaskiqEvents, TaskiqState
    from taskiq_redis import RedisStreamBroker
except ImportError as exc:  # pragma: no cover - the extra is not installed
    raise ImportError(
        "whop_async.taskiq needs taskiq and taskiq-redis: pip install 'whop-async[taskiq]'"
    ) from exc

from ._client import AsyncWhop
from ._converter import dump_json
from ._exceptions import (
    APIConnectionError,
    ConflictError,
    InternalServerError,
    InvalidParamsError,
    RateLimitError,
    WhopError,
)
from ._keys import derive_idempotency_key, new_idempotency_key
from ._models import NotificationCreateParams
from .redis import RateLimiterUnavailableError

__all__ = [
    "DEFAULT_TASK_NAME",
    "RETRYABLE_ERRORS",
    "NotificationTask",
    "enqueue_notification",
    "redeliver_abandoned",
    "register_notification_task",
]

#: Seconds a worker's shutdown waits for a sweep of abandoned messages under way.
_SWEEP_STOP_TIMEOUT = 5.0

logger = logging.getLogger("whop_async")

#: The name workers know the task by: the same in the enqueuing process and in the workers.
DEFAULT_TASK_NAME: Final = "whop_async.send_notification"
#: Failures worth another try later, with the same key: what taskiq's ``SmartRetryMiddleware``
#: or ``SimpleRetryMiddleware`` retries, when the broker has one. Refused notifications (400,
#: 401, 403, 422) fail at once. Types, because the middleware matches types: unlike
#: ``is_retryable`` it also retries a TLS failure and an unreachable Redis (both never reached
#: Whop, and may be mended by then), and it does not see a 408 or ``x-should-retry``.
RETRYABLE_ERRORS: Final[tuple[type[WhopError], ...]] = (
    APIConnectionError,
    RateLimitError,
    InternalServerError,
    ConflictError,
    RateLimiterUnavailableError,
)
#: Messages a sweep moves back to the stream at most, per stream.
SWEEP_BATCH: Final = 100
#: Messages one run of the hand-back script moves; it runs again while it finds that many.
HAND_BACK_BATCH: Final = 100

#: The task ``register_notification_task`` returns: it takes one notification as a dict.
NotificationTask: TypeAlias = AsyncTaskiqDecoratedTask[[dict[str, Any]], Coroutine[Any, Any, None]]

# KEYS[1]: the stream. ARGV: the consumer group, a consumer for the claim, the idle time in ms,
# the most to move. Claims what has been pending that long, adds it again at the end of the
# stream (new messages for any consumer) and acknowledges and deletes the old entries, in one
# step, so a message is never both lost and never twice in the stream. Returns how many moved.
_REDELIVER: Final = """
local moved = 0
local cursor = '0-0'
repeat
  local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], cursor,
    'COUNT', ARGV[4] - moved)
  cursor = claimed[1]
  for _, entry in ipairs(claimed[2]) do
    if entry[2] then
      redis.call('XADD', KEYS[1], '*', unpack(entry[2]))
      moved = moved + 1
    end
    redis.call('XACK', KEYS[1], ARGV[1], entry[1])
    redis.call('XDEL', KEYS[1], entry[1])
  end
until cursor == '0-0' or moved >= tonumber(ARGV[4])
return moved
"""

# KEYS[1]: the stream. ARGV: the consumer group, the consumer, the most to move. Takes the
# messages this consumer holds unacknowledged and, like _REDELIVER, adds each again at the end
# of the stream and acknowledges and deletes the old entry, in one step. Returns how many
# entries it looked at and how many it moved (an entry trimmed away is only acknowledged).
_HAND_BACK: Final = """
local held = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', ARGV[3], ARGV[2])
local moved = 0
for _, pending in ipairs(held) do
  local entry = redis.call('XRANGE', KEYS[1], pending[1], pending[1])[1]
  if entry then
    redis.call('XADD', KEYS[1], '*', unpack(entry[2]))
    moved = moved + 1
  end
  redis.call('XACK', KEYS[1], ARGV[1], pending[1])
  redis.call('XDEL', KEYS[1], pending[1])
end
return {#held, moved}
"""


async def redeliver_abandoned(broker: RedisStreamBroker, *, min_idle: float | None = None) -> int:
    """Put back on the stream the messages a consumer took and has not acknowledged for long.

    Any worker of the group then reads them as new. Workers of ``register_notification_task``
    call this every half ``idle_timeout``; call it yourself to recover at once, for example
    after you have stopped every worker.

    Args:
        broker: The ``RedisStreamBroker`` whose stream (and additional streams) to sweep.
        min_idle: Seconds a message must have been pending; the broker's ``idle_timeout`` by
            default. ``0`` moves every pending message: only when no worker is running.

    Returns:
        How many messages were moved.
    """
    idle_ms = broker.idle_timeout if min_idle is None else round(min_idle * 1000)
    streams = [broker.queue_name, *broker.additional_streams]
    moved = 0
    async with Redis(connection_pool=broker.connection_pool) as redis:
        script = redis.register_script(_REDELIVER)
        for stream in streams:
            moved += int(
                await script(
                    keys=[stream],
                    args=[broker.consumer_group_name, "whop_async-redeliver", idle_ms, SWEEP_BATCH],
                )
            )
    return moved


async def _hand_back(broker: RedisStreamBroker) -> int:
    """Put back on the stream, at once, every message this worker's consumer has not acknowledged.

    Run at worker shutdown: taskiq has stopped reading by then and, under ``taskiq worker``,
    has waited for the tasks it started, so what the consumer (``broker.consumer_name``, a
    fresh uuid per process unless set) still holds was taken and never started, or outlived
    ``--wait-tasks-timeout``.
    """
    streams = [broker.queue_name, *broker.additional_streams]
    moved = 0
    async with Redis(connection_pool=broker.connection_pool) as redis:
        script = redis.register_script(_HAND_BACK)
        for stream in streams:
            seen = HAND_BACK_BATCH
            while seen == HAND_BACK_BATCH:  # each run empties what it saw from the consumer
                seen, moved_now = await script(
                    keys=[stream],
                    args=[broker.consumer_group_name, broker.consumer_name, HAND_BACK_BATCH],
                )
                moved += int(moved_now)
    return moved


class _Worker:
    """What one worker process holds: its client, made on first use, and its sweeper."""

    def __init__(self, client_factory: Callable[[], AsyncWhop], broker: AsyncBroker) -> None:
        self._client_factory = client_factory
        self._broker = broker
        self._client: AsyncWhop | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def client(self) -> AsyncWhop:
        if self._client is None:
            client = self._client_factory()
            if not isinstance(client, AsyncWhop):
                raise InvalidParamsError(
                    "client_factory", f"must return an AsyncWhop, got {type(client).__name__}"
                )
            self._client = client
        return self._client

    async def send(self, notification: dict[str, Any]) -> None:
        params = NotificationCreateParams.from_mapping(notification)
        if params.idempotency_key is None:
            raise InvalidParamsError(
                "idempotency_key",
                "a queued notification must carry the key fixed when it was enqueued: "
                "enqueue it with enqueue_notification()",
            )
        await self.client().notifications.send(params)

    def start(self, _: TaskiqState) -> None:
        broker = self._broker
        if isinstance(broker, RedisStreamBroker) and self._sweeper is None:
            interval = max(broker.idle_timeout / 2000, 0.05)
            self._stopping = asyncio.Event()
            self._sweeper = asyncio.ensure_future(_sweep(broker, interval, self._stopping))

    async def stop(self, _: TaskiqState) -> None:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            self._stopping.set()
            # A sweep under way finishes first; one that hangs on Redis is cut short.
            done, _pending = await asyncio.wait({sweeper}, timeout=_SWEEP_STOP_TIMEOUT)
            if not done:
                sweeper.cancel()
        try:
            if isinstance(self._broker, RedisStreamBroker):
                await _hand_back_logged(self._broker)  # first: other workers wait for these
        finally:
            client, self._client = self._client, None
            if client is not None:
                await client.close()
                await client.rate_limiter.aclose()


async def _hand_back_logged(broker: RedisStreamBroker) -> None:
    try:
        moved = await _hand_back(broker)
    except (RedisError, OSError) as exc:
        logger.warning(
            "Could not hand back the notifications this worker took and did not start "
            "(another worker takes them after idle_timeout): %s: %s",
            type(exc).__name__,
            exc,
        )
    else:
        if moved:
            logger.info("Handed back %d notifications this worker took and did not start", moved)


async def _sweep(broker: RedisStreamBroker, interval: float, stopping: asyncio.Event) -> None:
    """Every ``interval`` seconds until ``stopping`` is set, re-queue abandoned messages.

    Ended by an event, not by cancelling it: a cancellation that lands inside a Redis call can
    come out as redis-py's TimeoutError, which the loop logs and goes on from, and the worker's
    shutdown then waited for it for good (seen under load in tests/test_taskiq.py).
    """
    while True:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval)
        if stopping.is_set():
            return
        try:
            moved = await redeliver_abandoned(broker)
        except (RedisError, OSError) as exc:
            logger.warning(
                "Could not sweep abandoned notifications: %s: %s", type(exc).__name__, exc
            )
        else:
            if moved:
                logger.info(
                    "Re-queued %d notifications a worker took and never acknowledged", moved
                )


def register_notification_task(
    broker: AsyncBroker,
    *,
    client_factory: Callable[[], AsyncWhop],
    task_name: str = DEFAULT_TASK_NAME,
) -> NotificationTask:
    """Register on ``broker`` the task that sends one queued notification, and return it.

    Call it at import time of the module both the enqueuing side and the workers import. In each
    worker process, ``client_factory`` is called once, when the first notification is sent
    there, and every task of the process sends through that client; on worker shutdown the
    client is closed, and then its rate limiter (``aclose()``). So build both in the factory::

        def make_client() -> AsyncWhop:
            limiter = RedisRateLimiter.for_api_key(REDIS_URL, API_KEY)
            return AsyncWhop(API_KEY, rate_limit=limiter)

    With a ``RedisStreamBroker``, workers also sweep abandoned messages back onto the stream
    (``redeliver_abandoned``), and on shutdown hand back at once the messages they took and
    did not start. The task is labelled ``retry_on_error`` for the errors in
    ``RETRYABLE_ERRORS``: add taskiq's ``SmartRetryMiddleware`` to the broker to retry them.

    Args:
        broker: The taskiq broker; ``RedisStreamBroker`` for acknowledged, redelivered work.
        client_factory: Makes the worker's ``AsyncWhop`` (with its ``RedisRateLimiter``).
        task_name: The task's name on the broker.

    Returns:
        The task, for ``enqueue_notification``.
    """
    if not isinstance(broker, AsyncBroker):
        raise InvalidParamsError("broker", f"must be a taskiq broker, got {type(broker).__name__}")
    if not callable(client_factory):
        raise InvalidParamsError("client_factory", "must be a callable returning an AsyncWhop")
    worker = _Worker(client_factory, broker)
    broker.add_event_handler(TaskiqEvents.WORKER_STARTUP, worker.start)
    broker.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, worker.stop)

    async def send_notification(notification: dict[str, Any]) -> None:
        await worker.send(notification)

    task: NotificationTask = broker.register_task(
        send_notification,
        task_name=task_name,
        retry_on_error=True,
        types_of_exceptions=RETRYABLE_ERRORS,
    )
    return task


async def enqueue_notification(
    task: NotificationTask,
    params: NotificationCreateParams | Mapping[str, Any],
    *,
    idempotency_key: str | None = None,
    source_id: str | int | None = None,
    namespace: str = "",
) -> str:
    """Validate a notification, fix its idempotency key, and queue it for the workers.

    The key is fixed here, never when the task runs: ``idempotency_key`` if given, else one
    derived from ``source_id`` (``derive_idempotency_key(source_id, namespace=namespace)``: the
    same record always gives the same key, so enqueuing it twice also notifies once), else the
    key already in ``params``, else a new random one.

    The message holds the notification as given, its ``extra_headers`` and ``extra_body``
    included: they travel through the broker as they are, so keep secrets out of them.

    Args:
        task: What ``register_notification_task`` returned.
        params: The notification: a ``NotificationCreateParams``, or a dict of ``create()``
            keywords.
        idempotency_key: The key to send with.
        source_id: Your own id of what this notification is about, to derive the key from.
        namespace: Keeps apart notifications derived from the same ``source_id``.

    Returns:
        The idempotency key the notification will be sent with.

    Raises:
        InvalidParamsError: the notification is invalid (an ``extra_body`` that is not JSON
            included), or two different keys were given; nothing was queued.
    """
    if isinstance(params, Mapping):
        params = NotificationCreateParams.from_mapping(params)
    elif not isinstance(params, NotificationCreateParams):
        raise InvalidParamsError(
            "params", f"must be a NotificationCreateParams or a dict, got {type(params).__name__}"
        )
    if idempotency_key is not None and source_id is not None:
        raise InvalidParamsError("source_id", "give idempotency_key or source_id, not both")
    if source_id is not None:
        idempotency_key = derive_idempotency_key(source_id, namespace=namespace)
    if idempotency_key is None:
        idempotency_key = params.idempotency_key or new_idempotency_key()
    elif params.idempotency_key not in (None, idempotency_key):
        raise InvalidParamsError(
            "idempotency_key", "differs from the idempotency_key already in params"
        )
    params = attrs.evolve(params, idempotency_key=idempotency_key)
    dump_json(params, params.extra_body)  # a body the worker could not send is refused here
    message = {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in attrs.asdict(params, recurse=False).items()
        if value is not None
    }
    await task.kiq(message)
    return idempotency_key
