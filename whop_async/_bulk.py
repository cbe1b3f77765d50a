"""Bulk sending: many notifications through one client, with bounded concurrency.

A fixed pool of ``concurrency`` workers pulls items from the input as it sends them, so the input
is read lazily (a generator over a database cursor is fine) and never more than ``concurrency``
requests are in flight. Every item gets one idempotency key for all of its attempts. Outcomes are
exact: one per item, in input order for ``gather_notifications``, as they complete for
``iter_notifications``; an item the batch never attempted carries ``BatchAbortedError``.

Failures come in two kinds. *Item* failures (400, 404, 422, a bad item, a 5xx after retries)
belong to that item. *Fatal* failures (401, 403, a closed client) mean no other item can succeed,
so the batch stops at once. Rate limits belong to the client: every attempt takes the client's
limiter, which a batch only wraps with its own cap and counters (see ``_gate.py``).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, overload

import attrs

from ._config import DEFAULT_MAX_RATE_LIMIT_WAIT, check_int, check_seconds, is_real
from ._exceptions import (
    FATAL_ERRORS,
    BatchAbortedError,
    BulkSendError,
    InvalidParamsError,
    WhopError,
)
from ._gate import BatchGate, BulkStats
from ._keys import new_idempotency_key
from ._models import NotificationCreateParams, NotificationCreateResponse

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ._client import AsyncWhop

__all__ = [
    "BulkItem",
    "BulkOutcome",
    "BulkStats",
    "DEFAULT_CONCURRENCY",
    "gather_notifications",
    "iter_notifications",
]

#: Requests in flight at once unless told otherwise.
DEFAULT_CONCURRENCY: Final = 16

#: What a bulk send accepts per item: built params, or a dict of ``create()`` keywords.
BulkItem: TypeAlias = NotificationCreateParams | Mapping[str, Any]


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
    """Why the item was not sent: its own error, or ``BatchAbortedError``."""

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


#: A callback run as each item finishes; when it returns an awaitable, that is awaited.
OnResult: TypeAlias = Callable[[BulkOutcome], object]


def _to_params(item: object) -> NotificationCreateParams:
    if isinstance(item, NotificationCreateParams):
        return item
    # dict before Mapping: isinstance against an ABC runs Python code, once per item.
    if isinstance(item, (dict, Mapping)):
        return NotificationCreateParams.from_mapping(item)
    raise InvalidParamsError(
        "item", f"must be a NotificationCreateParams or a dict, got {type(item).__name__}"
    )


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
            self._lock: asyncio.Lock | None = asyncio.Lock()
        elif isinstance(items, Iterable) and not isinstance(items, (str, bytes, Mapping)):
            self._sync = iter(items)
            self._lock = None
        else:
            raise InvalidParamsError(
                "items",
                f"must be an iterable or async iterable of items, got {type(items).__name__}",
            )
        self._next_index = 0
        self.exhausted = False
        self.is_sync = self._sync is not None
        """True when ``pull_sync()`` may be used: the input is a plain iterable."""

    def pull_sync(self) -> tuple[int, Any] | None:
        """``pull()`` for a plain iterable, without a coroutine per item."""
        assert self._sync is not None
        return self._numbered(_END if self.exhausted else next(self._sync, _END))

    async def pull(self) -> tuple[int, Any] | None:
        """The next item with its index, or ``None`` once the input is exhausted."""
        if self._sync is not None:
            return self.pull_sync()
        assert self._async is not None
        assert self._lock is not None
        async with self._lock:  # an async generator must not be advanced concurrently
            return self._numbered(await anext(self._async, _END) if not self.exhausted else _END)

    def _numbered(self, item: object) -> tuple[int, Any] | None:
        if item is _END:
            self.exhausted = True
            return None
        index = self._next_index
        self._next_index += 1
        return index, item


_END: Final = object()


class _Batch:
    """One bulk send: the workers, the gate, and where outcomes go.

    ``results`` (gather's list, by index) is filled when ``keep_results`` is set; a
    ``BulkOutcome`` is made for an item only when someone reads it (``on_result``, ``deliver``).
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
        keep_results: bool = False,
        deliver: Callable[[BulkOutcome], Awaitable[None]] | None = None,
    ) -> None:
        _check_options(concurrency, max_rate, max_rate_limit_wait)
        self._client = client
        self._source = _Source(items)
        self._concurrency = concurrency
        self._stop_on_failure = stop_on_failure
        self._on_result = on_result
        self._deliver = deliver
        self.results: list[NotificationCreateResponse | WhopError | None] | None = (
            [] if keep_results else None
        )
        self._max_rate_limit_wait = max_rate_limit_wait
        self.stats = stats if stats is not None else BulkStats()
        self._gate = BatchGate(client.rate_limiter, max_rate=max_rate, stats=self.stats)
        self.first_failure: WhopError | None = None
        self._stopped = False

    async def run(self) -> None:
        """Send everything, then account for what was never attempted."""
        workers = [asyncio.ensure_future(self._work()) for _ in range(self._concurrency)]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for worker in workers:
                worker.cancel()
            await asyncio.wait(workers)
            raise
        if self._stopped:
            await self._mark_rest_aborted()

    async def _work(self) -> None:
        # Once per item, so kept flat: a sync input is pulled without a coroutine, and the
        # send is inline rather than one more coroutine.
        source = self._source
        send = self._client.notifications._send
        while not self._stopped:
            pulled = source.pull_sync() if source.is_sync else await source.pull()
            if pulled is None:
                return
            index, item = pulled
            key: str | None = None
            try:
                params = _to_params(item)
                key = params.idempotency_key or new_idempotency_key()
                response = await send(
                    params,
                    key,
                    limiter=self._gate.for_item(),
                    max_rate_limit_wait=self._max_rate_limit_wait,
                )
            except WhopError as exc:
                handing_over = self._finish(index, key, None, exc)
            else:
                handing_over = self._finish(index, key, response, None)
            if handing_over is not None:
                await handing_over

    def _finish(
        self,
        index: int,
        key: str | None,
        response: NotificationCreateResponse | None,
        error: WhopError | None,
    ) -> Awaitable[None] | None:
        """Account for one item; return the hand-over to await, if anyone reads outcomes."""
        if error is None:
            self.stats.succeeded += 1
        else:
            self.stats.failed += 1
            if isinstance(error, BatchAbortedError):
                self.stats.aborted += 1
            elif self.first_failure is None:
                self.first_failure = error
            if isinstance(error, FATAL_ERRORS):
                self._stop(error)
            elif self._stop_on_failure and not isinstance(error, BatchAbortedError):
                self._stopped = True
        results = self.results
        if results is not None:
            if index >= len(results):  # items finish out of order
                results.extend([None] * (index + 1 - len(results)))
            results[index] = response if error is None else error
        if self._on_result is None and self._deliver is None:
            return None
        return self._hand_over(BulkOutcome(index, key, response, error))

    async def _hand_over(self, outcome: BulkOutcome) -> None:
        if self._on_result is not None:
            returned = self._on_result(outcome)
            if inspect.isawaitable(returned):
                await returned
        if self._deliver is not None:
            await self._deliver(outcome)

    def _stop(self, cause: WhopError) -> None:
        self._stopped = True
        self._gate.abort(cause)

    async def _mark_rest_aborted(self) -> None:
        if self._gate.abort_cause is None:
            assert self.first_failure is not None
            self._gate.abort(self.first_failure)
        while (pulled := await self._source.pull()) is not None:
            handing_over = self._finish(pulled[0], None, None, self._gate.aborted_error())
            if handing_over is not None:
                await handing_over


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
) -> list[Any]:
    """Send many notifications, ``concurrency`` at a time, and return one outcome per item.

    Like ``asyncio.gather``, the list is in input order. ``items`` may be any iterable or async
    iterable (a lazy generator included) of ``NotificationCreateParams`` or dicts of ``create()``
    keywords; it is read as items are sent, not ahead. Each item keeps one idempotency key across
    its retries (its own ``idempotency_key`` if it has one). A 401, 403 or closed client stops
    the batch at once in both modes: no more requests start and the items not attempted carry
    ``BatchAbortedError``.

    Args:
        client: The client to send through.
        items: What to send.
        concurrency: Requests in flight at most.
        return_exceptions: When True, each failure's exception stands at its index and the other
            items are still sent. When False (the default), no new item starts after the first
            failure; the ones in flight finish; then ``BulkSendError`` is raised.
        on_result: Called with each ``BulkOutcome`` as it happens (may be async): a progress bar,
            a journal.
        max_rate: At most this many requests per second, for the whole batch: a cap on top of
            the client's ``rate_limit``, which every request takes anyway.
        max_rate_limit_wait: Seconds each item may wait on 429s; past that, its 429s count
            against its retry budget like other retryable failures.
        stats: A ``BulkStats`` to fill in as the batch runs.

    Returns:
        One ``NotificationCreateResponse`` per item, in input order; with
        ``return_exceptions=True``, an exception stands at the index of each failed item
        (the type checker knows which of the two lists it gets).

    Raises:
        BulkSendError: with ``return_exceptions=False``, after a failure; ``results`` holds every
            outcome (``BatchAbortedError`` for items never attempted), the first failure is its
            ``__cause__``.
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
        keep_results=True,
    )
    await batch.run()
    complete: list[Any] | None = batch.results  # every index was filled: one outcome per item
    assert complete is not None
    if not return_exceptions and batch.first_failure is not None:
        stats_ = batch.stats
        raise BulkSendError(
            f"Bulk send stopped: {stats_.succeeded} sent, {stats_.failed - stats_.aborted} failed, "
            f"{stats_.aborted} not attempted. First failure: {batch.first_failure}",
            complete,
        ) from batch.first_failure
    return complete


async def iter_notifications(
    client: AsyncWhop,
    items: Iterable[BulkItem] | AsyncIterable[BulkItem],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_result: OnResult | None = None,
    max_rate: float | None = None,
    max_rate_limit_wait: float = DEFAULT_MAX_RATE_LIMIT_WAIT,
    stats: BulkStats | None = None,
) -> AsyncGenerator[BulkOutcome, None]:
    """Send many notifications and yield each item's ``BulkOutcome`` as it completes.

    The streaming twin of ``gather_notifications`` for batches too large to hold results: memory
    stays flat however many items there are. Outcomes arrive in completion order (use
    ``outcome.index``). Failures never stop the stream except fatal ones (401, 403, a closed
    client), after which every remaining item is yielded with ``BatchAbortedError``. Breaking
    out of the loop cancels the requests in flight; wrap the iterator in
    ``contextlib.aclosing`` to make that happen at once rather than at garbage collection.
    Arguments are those of ``gather_notifications``.
    """
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
        deliver=queue.put,
    )

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
    finally:
        if not runner.done():
            runner.cancel()
            await asyncio.wait([runner])
