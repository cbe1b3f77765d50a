"""Bulk sending: many notifications through one client, with bounded concurrency.

A fixed pool of ``concurrency`` workers pulls items from the input as it sends them, so the input
is read lazily (a generator over a database cursor is fine) and never more than ``concurrency``
requests are in flight. Each item is one call of ``client.notifications.send``, so it keeps one
idempotency key for all of its attempts and takes the client's rate limiter on each; the batch
watches its items through the request loop's observer seam (``_observe.py``) for its counters,
its own ``max_rate`` and its stop. Outcomes are exact: one per item read, in input order for
``gather_notifications``, as they complete for ``iter_notifications``.

How a batch ends early:

* *Item* failures (400, 404, 422, a bad item, a 5xx after retries) belong to their item. A 403
  belongs to its audience: later items for the same ``account_id``, ``company_id`` or
  ``experience_id`` fail with it at once, without a request; other audiences go on.
* *Fatal* failures (``FATAL_ERRORS``: a 401, a closed client) stop the batch at once: no item
  starts and no attempt is sent after them; items waiting for the rate limiter or between two
  attempts end with ``BatchAbortedError``.
* A *stop* (the ``stop`` event, or the first failure of ``gather_notifications`` without
  ``return_exceptions``) lets the items already sent finish, and ends the ones not yet sent with
  ``BatchAbortedError``: safe to send again as they are.
* *Cancellation* of the task running the send reports every item in flight to ``on_result``
  before the ``CancelledError`` propagates: ``OutcomeUnknownError`` with its key for one that
  reached the wire, ``BatchAbortedError`` for one that did not.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, overload

import attrs

from ._config import DEFAULT_MAX_RATE_LIMIT_WAIT, check_int, check_seconds, is_real
from ._exceptions import (
    FATAL_ERRORS,
    APIError,
    APIStatusError,
    BatchAbortedError,
    BulkSendError,
    InvalidParamsError,
    OutcomeUnknownError,
    PermissionDeniedError,
    WhopError,
)
from ._models import NotificationCreateParams, NotificationCreateResponse
from ._observe import AttemptOutcome, CallInfo, CallObserver, observing
from ._ratelimit import Permit, pause_after_429

if TYPE_CHECKING:
    from ._client import AsyncWhop

__all__ = [
    "DEFAULT_CONCURRENCY",
    "BulkItem",
    "BulkOutcome",
    "BulkStats",
    "gather_notifications",
    "iter_notifications",
]

#: Requests in flight at once unless told otherwise.
DEFAULT_CONCURRENCY: Final = 16

#: What a bulk send accepts per item: built params, or a dict of ``create()`` keywords.
BulkItem: TypeAlias = NotificationCreateParams | Mapping[str, Any]

_AUDIENCE_FIELDS: Final = ("account_id", "company_id", "experience_id")


@attrs.define
class BulkStats:
    """Counters of a bulk send, updated as it runs (pass one in to read them during or after).

    The request counters match the wire: ``attempts`` is what the server was sent,
    ``rate_limited`` the 429s it answered.
    """

    succeeded: int = 0
    """Items Whop accepted (replayed ones included)."""
    failed: int = 0
    """Items that ended in an error (aborted ones included)."""
    aborted: int = 0
    """Items not sent, or not sent again, because the batch stopped early."""
    attempts: int = 0
    """HTTP requests sent, retries included."""
    retries: int = 0
    """Attempts made after a failure that used one of the item's retries (a 429 past
    ``max_rate_limit_wait`` included)."""
    rate_limited: int = 0
    """429 answers received."""
    rate_limit_wait: float = 0.0
    """Seconds the batch spent paused by 429s (overlapping pauses counted once)."""
    send_rate: float | None = None
    """The pace in requests per second, once a 429 (or ``max_rate``) set one."""
    replayed: int = 0
    """Items Whop answered from an earlier request with the same key: sent before, not now."""


@attrs.frozen
class BulkOutcome:
    """How one item of a bulk send ended."""

    index: int
    """The item's position in the input, from 0."""
    idempotency_key: str | None
    """The key sent with every attempt of the item; ``None`` if it never reached the wire."""
    response: NotificationCreateResponse | None
    """Whop's answer when the item was sent."""
    error: WhopError | None
    """Why the item was not sent: its own error, ``BatchAbortedError`` or
    ``OutcomeUnknownError``."""
    attempts: int = 0
    """HTTP requests sent for the item."""

    @property
    def ok(self) -> bool:
        """True when Whop accepted the item."""
        return self.error is None

    @property
    def result(self) -> NotificationCreateResponse | WhopError:
        """The response, or the error: what ``gather_notifications`` puts at the item's index."""
        if self.error is not None:
            return self.error
        assert self.response is not None
        return self.response

    @property
    def request_id(self) -> str | None:
        """Whop's ``x-request-id`` of the item's last answer, success or refusal."""
        if self.response is not None:
            return self.response.request_id
        return self.error.request_id if isinstance(self.error, APIStatusError) else None

    @property
    def replayed(self) -> bool:
        """True when Whop answered from the key's first request: it was sent then, not now."""
        if self.response is not None:
            return self.response.replayed
        if isinstance(self.error, APIStatusError):
            return self.error.headers.get("Idempotent-Replayed", "").lower() == "true"
        return False


#: A callback run as each item finishes; when it returns an awaitable, that is awaited.
OnResult: TypeAlias = Callable[[BulkOutcome], object]


def _to_params(item: object) -> NotificationCreateParams:
    if isinstance(item, NotificationCreateParams):
        return item
    if isinstance(item, (dict, Mapping)):  # a dict spares the ABC's slower check
        return NotificationCreateParams.from_mapping(item)
    raise InvalidParamsError(
        "item", f"must be a NotificationCreateParams or a dict, got {type(item).__name__}"
    )


def _audience(params: NotificationCreateParams) -> tuple[str, str]:
    for name in _AUDIENCE_FIELDS:
        value = getattr(params, name)
        if value is not None:
            return name, value
    raise AssertionError("params always name one audience")  # pragma: no cover


def _check_options(concurrency: int, max_rate: float | None, max_rate_limit_wait: float) -> None:
    check_int("concurrency", concurrency, minimum=1)
    if max_rate is not None and (not is_real(max_rate) or not max_rate > 0):
        raise InvalidParamsError("max_rate", f"must be a number > 0 or None, got {max_rate!r}")
    check_seconds("max_rate_limit_wait", max_rate_limit_wait)


class _Source:
    """Hands out ``(index, item)`` pairs from a sync or async iterable, one at a time."""

    def __init__(self, items: Iterable[Any] | AsyncIterable[Any]) -> None:
        self._sync: Iterator[Any] | None = None
        self._async: AsyncIterator[Any] | None = None
        if isinstance(items, AsyncIterable):
            self._async = aiter(items)
        elif isinstance(items, Iterable) and not isinstance(items, (str, bytes, Mapping)):
            self._sync = iter(items)
        else:
            raise InvalidParamsError(
                "items",
                f"must be an iterable or async iterable of items, got {type(items).__name__}",
            )
        self._lock = asyncio.Lock()
        self._next_index = 0
        self._exhausted = False

    @property
    def is_sync(self) -> bool:
        """True for a plain iterable: ``next_now()`` reads it without awaiting."""
        return self._sync is not None

    def next_now(self) -> tuple[int, Any] | None:
        """``next()`` for a plain iterable, without a coroutine: a bulk send of dicts pulls
        its items in 2k to 3k fewer instructions each (about 0.4 % of a request,
        ``benchmarks/instructions.py``, 2026-12-03), which the guard of issue 16 needs."""
        assert self._sync is not None
        if self._exhausted:
            return None
        return self._numbered(next(self._sync, _END))

    async def next(self) -> tuple[int, Any] | None:
        """The next item with its index, or ``None`` once the input is exhausted."""
        if self._exhausted:
            return None
        if self._sync is not None:
            return self.next_now()
        assert self._async is not None
        async with self._lock:  # an async generator must not be advanced concurrently
            item = _END if self._exhausted else await anext(self._async, _END)
        return self._numbered(item)

    def _numbered(self, item: object) -> tuple[int, Any] | None:
        if item is _END:
            self._exhausted = True
            return None
        index = self._next_index
        self._next_index += 1
        return index, item


_END: Final = object()

#: Where a worker's current item stands: what an interruption may cut short.
_Phase: TypeAlias = Literal["idle", "pulling", "waiting", "sending", "backoff"]


class _Worker(CallObserver):
    """One worker task and the item it is sending, watched through the observer seam.

    A worker observes every call of its task (bound once, for its life) but counts only the
    one it makes for its item (``active``): not a call that an ``on_result`` callback makes.
    """

    def __init__(self, batch: _Batch) -> None:
        self._batch = batch
        self.task: asyncio.Task[None] | None = None
        self.phase: _Phase = "idle"
        self.active = False
        self.interrupted = False
        self.key: str | None = None
        self.attempts = 0
        self.sent = False
        self._limiter_key = ""
        self._permit: Permit | None = None

    def call_started(self, call: CallInfo) -> None:
        if self.active:
            self.key = call.idempotency_key
            self._limiter_key = call.limiter_key

    def before_attempt(self, attempt: int) -> float:
        if not self.active:
            return 0.0
        batch = self._batch
        if batch.fatal is not None or (attempt == 1 and batch.stopped):
            raise batch.aborted_error()
        self.phase = "waiting"
        return 0.0 if batch.max_rate is None else batch.next_slot()

    def attempt_started(self, attempt: int, permit: Permit) -> None:
        if self.active:
            self.phase = "sending"
            self.sent = True
            self.attempts = attempt
            self._permit = permit
            self._batch.stats.attempts += 1

    def attempt_ended(self, attempt: int, outcome: AttemptOutcome) -> None:
        if self.active and outcome.status == 429:
            self._batch.count_429(self._permit, self._limiter_key)

    def retry_scheduled(
        self, attempt: int, delay: float, error: APIError, uses_retry: bool
    ) -> None:
        if self.active:
            self.phase = "backoff"
            self._batch.stats.retries += uses_retry

    def call_ended(self, response: object | None, error: BaseException | None) -> None:
        if self.active:
            self.phase = "idle"

    def interrupt(self) -> None:
        """End the current item (or pull) now; the worker reports it as cut short."""
        if self.task is not None and not self.task.done():
            self.interrupted = True
            self.task.cancel()


class _Batch:
    """One bulk send: the workers, its counters and where outcomes go.

    ``results`` (gather's list, by index) is filled when ``keep_results`` is set.
    """

    def __init__(
        self,
        client: AsyncWhop,
        items: Iterable[Any] | AsyncIterable[Any],
        *,
        concurrency: int,
        stop_on_failure: bool,
        on_result: OnResult | None,
        max_rate: float | None,
        max_rate_limit_wait: float,
        stats: BulkStats | None,
        stop: asyncio.Event | None,
        keep_results: bool = False,
        deliver: Callable[[BulkOutcome], Awaitable[None]] | None = None,
    ) -> None:
        _check_options(concurrency, max_rate, max_rate_limit_wait)
        if stop is not None and not isinstance(stop, asyncio.Event):
            raise InvalidParamsError("stop", f"must be an asyncio.Event, got {type(stop).__name__}")
        self._client = client
        # Once for the batch, so that no item carries a per-call option.
        self._sender = client.with_options(max_rate_limit_wait=max_rate_limit_wait).notifications
        self._source = _Source(items)
        self._concurrency = concurrency
        self._stop_on_failure = stop_on_failure
        self._on_result = on_result
        self._deliver = deliver
        self._stop_event = stop
        self.results: list[NotificationCreateResponse | WhopError | None] | None = (
            [] if keep_results else None
        )
        self.max_rate = max_rate
        self.stats = stats if stats is not None else BulkStats()
        self.stats.send_rate = max_rate
        self.first_failure: WhopError | None = None
        self.fatal: WhopError | None = None
        self.stopped = False
        self._stop_cause: WhopError | None = None
        self._denied: dict[tuple[str, str], PermissionDeniedError] = {}
        self._workers: list[_Worker] = []
        self._next_send_at = 0.0
        self._paused_until = 0.0

    # running

    async def run(self) -> None:
        """Send until the input is exhausted or the batch stops; account for every item read."""
        self._workers = [_Worker(self) for _ in range(self._concurrency)]
        for worker in self._workers:
            worker.task = asyncio.ensure_future(self._work(worker))
        tasks = [worker.task for worker in self._workers if worker.task is not None]
        watcher = None
        if self._stop_event is not None:
            watcher = asyncio.ensure_future(self._stop_event.wait())
            watcher.add_done_callback(lambda _: self.stop())
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            broken = next((task for task in done if task.exception() is not None), None)
            if broken is not None:  # on_result (or deliver) raised: end the rest quietly
                self._deliver = self._on_result = None
                for task in tasks:
                    task.cancel()
                await asyncio.wait(tasks)
                broken.result()
        except asyncio.CancelledError:
            for task in tasks:  # each reports the item it was sending, then ends
                task.cancel()
            await asyncio.wait(tasks)
            raise
        finally:
            if watcher is not None:
                watcher.cancel()

    async def _work(self, worker: _Worker) -> None:
        source = self._source
        with observing(worker):  # every call of this task, for the worker's life
            while not (self.stopped or self.fatal is not None):
                if source.is_sync:  # nothing to wait for, so nothing to interrupt
                    pulled = source.next_now()
                else:
                    worker.phase = "pulling"
                    try:
                        pulled = await source.next()
                    except asyncio.CancelledError:
                        if not worker.interrupted:
                            raise
                        _uncancel()
                        return
                    finally:
                        worker.phase = "idle"
                if pulled is None:
                    return
                await self._send(worker, *pulled)

    async def _send(self, worker: _Worker, index: int, item: object) -> None:
        worker.key, worker.attempts, worker.sent, worker.interrupted = None, 0, False, False
        response: NotificationCreateResponse | None = None
        error: WhopError | None = None
        try:
            params = _to_params(item)
            denied = self._denied.get(_audience(params)) if self._denied else None
            if self.fatal is not None or self.stopped:
                error = self.aborted_error()
            elif denied is not None:
                error = denied
            else:
                worker.active = True
                try:
                    response = await self._sender.send(params)
                finally:
                    worker.active = False
        except asyncio.CancelledError:
            if not worker.interrupted:
                await self._report_cancelled(worker, index)
                raise
            _uncancel()
            error = self.aborted_error()
        except PermissionDeniedError as exc:  # this audience is closed to the key: skip its rest
            error = self._denied.setdefault(_audience(params), exc)
        except WhopError as exc:
            error = exc
        self._count(index, response, error)
        if self._on_result is not None or self._deliver is not None:
            # An outcome object only for whoever reads one: gather without on_result does not.
            key = worker.key if worker.sent else None
            await self._hand_over(BulkOutcome(index, key, response, error, worker.attempts))

    async def _report_cancelled(self, worker: _Worker, index: int) -> None:
        """The send was cancelled with this item under way: tell ``on_result`` how it stands."""
        if worker.sent:
            error: WhopError = OutcomeUnknownError(
                "The bulk send was cancelled while this item was in flight: Whop may or may not "
                "have queued it. Send it again with the same idempotency key, and Whop replays "
                "the first answer instead of notifying twice."
            )
        else:
            error = BatchAbortedError("Not sent: the bulk send was cancelled first.")
        outcome = BulkOutcome(index, worker.key if worker.sent else None, None, error, 0)
        self._count(index, None, error)
        if self._on_result is not None:
            returned = self._on_result(outcome)
            if inspect.isawaitable(returned):
                await returned

    # accounting

    def _count(
        self, index: int, response: NotificationCreateResponse | None, error: WhopError | None
    ) -> None:
        """Account for one item read: counters, gather's result list, and what stops the batch."""
        results = self.results
        if results is not None:
            if index >= len(results):  # items finish out of order
                results.extend([None] * (index + 1 - len(results)))
            results[index] = response if error is None else error
        stats = self.stats
        if error is None:
            stats.succeeded += 1
            if response is not None and response.replayed:
                stats.replayed += 1
            return
        stats.failed += 1
        if isinstance(error, (BatchAbortedError, OutcomeUnknownError)):
            stats.aborted += isinstance(error, BatchAbortedError)
            return
        if self.first_failure is None:
            self.first_failure = error
        if isinstance(error, FATAL_ERRORS):
            self._abort(error)
        elif self._stop_on_failure:
            self.stop(error)

    async def _hand_over(self, outcome: BulkOutcome) -> None:
        if self._on_result is not None:
            returned = self._on_result(outcome)
            if inspect.isawaitable(returned):
                await returned
        if self._deliver is not None:
            await self._deliver(outcome)

    # stopping

    def stop(self, cause: WhopError | None = None) -> None:
        """Start no new item: those not sent yet end as aborted, those sent finish."""
        if self.stopped:
            return
        self.stopped = True
        self._stop_cause = cause
        for worker in self._workers:
            if worker.phase == "pulling" or (worker.phase == "waiting" and not worker.sent):
                worker.interrupt()

    def _abort(self, cause: WhopError) -> None:
        """Send nothing more: end every item that is not on the wire right now."""
        if self.fatal is not None:
            return
        self.fatal = cause
        self.stopped = True
        for worker in self._workers:
            if worker.phase in ("pulling", "waiting", "backoff"):
                worker.interrupt()

    def aborted_error(self) -> BatchAbortedError:
        """The error that stands for an item the batch did not send (again)."""
        cause = self.fatal or self._stop_cause
        if cause is None:
            error = BatchAbortedError("Not sent: the bulk send was stopped.")
        else:
            error = BatchAbortedError(
                f"Not sent: the batch stopped after an earlier failure ({cause})."
            )
            error.__cause__ = cause
        return error

    async def mark_rest_aborted(self) -> None:
        """Read what is left of the input and account for each item as never sent."""
        while (pulled := await self._source.next()) is not None:
            error = self.aborted_error()
            self._count(pulled[0], None, error)
            if self._on_result is not None or self._deliver is not None:
                await self._hand_over(BulkOutcome(pulled[0], None, None, error))

    # pacing and counting, for the workers

    def next_slot(self) -> float:
        """Take the next attempt's slot under ``max_rate``; return how long until it comes."""
        assert self.max_rate is not None
        now = self._client.clock.now()
        slot = max(now, self._next_send_at)
        self._next_send_at = slot + 1.0 / self.max_rate
        return slot - now

    def count_429(self, permit: Permit | None, limiter_key: str) -> None:
        """Count a 429, the time it pauses the batch, and the pace the limiter took from it."""
        stats = self.stats
        stats.rate_limited += 1
        now = self._client.clock.now()
        resume_at = now + pause_after_429(permit.retry_after if permit is not None else None)
        stats.rate_limit_wait += max(0.0, resume_at - max(now, self._paused_until))
        self._paused_until = max(self._paused_until, resume_at)
        paces = [self._client.rate_limiter.pacing_rate(limiter_key), self.max_rate]
        known = [pace for pace in paces if pace]
        stats.send_rate = min(known) if known else None


def _uncancel() -> None:
    """Forget a cancellation this task asked for itself and has handled (Python 3.11+)."""
    if sys.version_info >= (3, 11):
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()


@overload
async def gather_notifications(
    client: AsyncWhop,
    items: Iterable[BulkItem] | AsyncIterable[BulkItem],
    *,
    concurrency: int = ...,
    return_exceptions: Literal[False] = ...,
    on_result: OnResult | None = ...,
    max_rate: float | None = ...,
    max_rate_limit_wait: float = ...,
    stats: BulkStats | None = ...,
    stop: asyncio.Event | None = ...,
) -> list[NotificationCreateResponse]: ...


@overload
async def gather_notifications(
    client: AsyncWhop,
    items: Iterable[BulkItem] | AsyncIterable[BulkItem],
    *,
    concurrency: int = ...,
    return_exceptions: bool,
    on_result: OnResult | None = ...,
    max_rate: float | None = ...,
    max_rate_limit_wait: float = ...,
    stats: BulkStats | None = ...,
    stop: asyncio.Event | None = ...,
) -> list[NotificationCreateResponse | WhopError]: ...


async def gather_notifications(
    client: AsyncWhop,
    items: Iterable[BulkItem] | AsyncIterable[BulkItem],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    return_exceptions: bool = False,
    on_result: OnResult | None = None,
    max_rate: float | None = None,
    max_rate_limit_wait: float = DEFAULT_MAX_RATE_LIMIT_WAIT,
    stats: BulkStats | None = None,
    stop: asyncio.Event | None = None,
) -> list[Any]:
    """Send many notifications, ``concurrency`` at a time, and return one outcome per item.

    Like ``asyncio.gather``, the list is in input order. ``items`` may be any iterable or async
    iterable (a lazy generator included) of ``NotificationCreateParams`` or dicts of ``create()``
    keywords; it is read as items are sent, not ahead. Each item keeps one idempotency key across
    its retries (its own ``idempotency_key`` if it has one). A 401 or a closed client stops the
    batch at once in both modes; a 403 fails the rest of its audience only.

    Args:
        client: The client to send through.
        items: What to send.
        concurrency: Requests in flight at most.
        return_exceptions: When True, each failure's exception stands at its index and the other
            items are still sent. When False (the default), no new item starts after the first
            failure; the ones in flight finish; then ``BulkSendError`` is raised.
        on_result: Called with each ``BulkOutcome`` as it happens (may be async): a progress bar,
            a journal. Also told of the items in flight when the send is cancelled.
        max_rate: At most this many requests per second, for the whole batch: a cap on top of
            the client's ``rate_limit``, which every request takes anyway.
        max_rate_limit_wait: Seconds each item may wait on 429s; past that, its 429s count
            against its retry budget like other retryable failures.
        stats: A ``BulkStats`` to fill in as the batch runs.
        stop: Set it to stop gracefully (on SIGTERM, say): no new item starts, the ones already
            sent finish, and every item not sent ends with ``BatchAbortedError``.

    Returns:
        One ``NotificationCreateResponse`` per item, in input order; with
        ``return_exceptions=True``, an exception stands at the index of each failed item
        (the type checker knows which of the two lists it gets).

    Raises:
        BulkSendError: with ``return_exceptions=False``, after a failure or a stop; ``results``
            holds every outcome (``BatchAbortedError`` for items never sent), the first failure
            is its ``__cause__``.
        InvalidParamsError: an option is invalid; nothing was sent.
    """
    batch = _Batch(
        client,
        items,
        concurrency=concurrency,
        stop_on_failure=not return_exceptions,
        on_result=on_result,
        max_rate=max_rate,
        max_rate_limit_wait=max_rate_limit_wait,
        stats=stats,
        stop=stop,
        keep_results=True,
    )
    await batch.run()
    if batch.stopped:
        await batch.mark_rest_aborted()
    complete: list[Any] | None = batch.results  # every index was filled: one outcome per item
    assert complete is not None
    counted = batch.stats
    if not return_exceptions and counted.failed:
        cause = batch.first_failure
        raise BulkSendError(
            f"Bulk send stopped: {counted.succeeded} sent, {counted.failed - counted.aborted} "
            f"failed, {counted.aborted} not sent."
            + (f" First failure: {cause}" if cause is not None else " It was stopped."),
            complete,
        ) from cause
    return complete


def iter_notifications(
    client: AsyncWhop,
    items: Iterable[BulkItem] | AsyncIterable[BulkItem],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_result: OnResult | None = None,
    max_rate: float | None = None,
    max_rate_limit_wait: float = DEFAULT_MAX_RATE_LIMIT_WAIT,
    stats: BulkStats | None = None,
    stop: asyncio.Event | None = None,
) -> AsyncGenerator[BulkOutcome, None]:
    """Send many notifications and yield each item's ``BulkOutcome`` as it completes.

    The streaming twin of ``gather_notifications`` for batches too large to hold results: memory
    stays flat however many items there are. Outcomes arrive in completion order (use
    ``outcome.index``). Item failures never end the stream. After a fatal failure (a 401, a
    closed client), or once ``stop`` is set, it yields the outcomes of the items it had read,
    reads no more input (an endless source included), and then raises the fatal error (a stop
    just ends it). Breaking out of the loop cancels the requests in flight, reporting them to
    ``on_result``; wrap the iterator in ``contextlib.aclosing`` to make that happen at once
    rather than at garbage collection. Arguments are those of ``gather_notifications``.

    Raises:
        InvalidParamsError: an option is invalid: when called, before anything is read or sent.
        AuthenticationError: the key was refused (likewise ``ClientClosedError``): after the
            outcomes of every item read.
    """
    _check_options(concurrency, max_rate, max_rate_limit_wait)
    queue: asyncio.Queue[BulkOutcome | None] = asyncio.Queue(maxsize=concurrency)
    batch = _Batch(
        client,
        items,
        concurrency=concurrency,
        stop_on_failure=False,
        on_result=on_result,
        max_rate=max_rate,
        max_rate_limit_wait=max_rate_limit_wait,
        stats=stats,
        stop=stop,
        deliver=queue.put,
    )
    return _stream(batch, queue)


async def _stream(
    batch: _Batch, queue: asyncio.Queue[BulkOutcome | None]
) -> AsyncGenerator[BulkOutcome, None]:
    """Run ``batch`` and yield what it delivers to ``queue``; see ``iter_notifications``."""

    async def run_then_close() -> None:
        try:
            await batch.run()
        except Exception:
            await queue.put(None)  # wake the consumer, which re-raises this through the runner
            raise
        await queue.put(None)

    runner = asyncio.ensure_future(run_then_close())
    try:
        while (outcome := await queue.get()) is not None:
            yield outcome
        await runner  # re-raise whatever ended the batch, if anything did
        if batch.fatal is not None:
            raise batch.fatal
    finally:
        if not runner.done():
            runner.cancel()
            await asyncio.wait([runner])
