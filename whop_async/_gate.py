"""What a bulk send adds to the client's rate limiter: its own cap, its counters, its abort.

Rate limiting itself belongs to the client (``_ratelimit.py``): a 429 pauses every call of the
client, bulk or not, and the client paces itself by what it learns. A batch only wraps that
limiter, per item, to add what concerns the batch alone:

* ``max_rate`` caps the batch's requests per second from the start;
* ``BulkStats`` counts attempts, retries, 429s and the time paused by them, as the batch runs;
* a fatal failure (401, 403, closed client) turns every later attempt into ``BatchAbortedError``.
"""

from __future__ import annotations

import asyncio

import attrs

from ._exceptions import BatchAbortedError
from ._ratelimit import Permit, RateLimit, RateLimiter, Unlimited

__all__ = ["BatchGate", "BulkStats"]


@attrs.define
class BulkStats:
    """Counters of a bulk send, updated as it runs (pass one in to read them during or after)."""

    succeeded: int = 0
    """Items Whop accepted."""
    failed: int = 0
    """Items that ended in an error (aborted ones included)."""
    aborted: int = 0
    """Items never attempted because the batch stopped early."""
    attempts: int = 0
    """HTTP attempts made, retries included."""
    retries: int = 0
    """Retries after a failure other than a 429 (5xx, timeouts, dropped connections)."""
    rate_limited: int = 0
    """429 answers received."""
    rate_limit_wait: float = 0.0
    """Seconds the batch spent paused by 429s."""
    send_rate: float | None = None
    """The pace in requests per second, once a 429 (or ``max_rate``) set one."""


class BatchGate:
    """Shared state of one bulk send; ``for_item()`` is the limiter each item's attempts take."""

    def __init__(self, limiter: RateLimiter, *, max_rate: float | None, stats: BulkStats) -> None:
        self._limiter = limiter
        self._loop = asyncio.get_running_loop()
        self._max_rate = max_rate
        self._next_send_at = 0.0
        self._paused_until = 0.0
        self._stats = stats
        stats.send_rate = max_rate
        # Only a limiter that overrides pacing_rate() can move the pace away from max_rate.
        self._paced = type(limiter).pacing_rate is not RateLimiter.pacing_rate
        # The limiter to wait on, if any: Unlimited's acquire and release do nothing, and
        # skipping them saves two coroutines an attempt.
        self._inner = None if type(limiter) is Unlimited else limiter
        self.abort_cause: BaseException | None = None

    def abort(self, cause: BaseException) -> None:
        """Make every attempt that has not started yet fail with ``BatchAbortedError``."""
        if self.abort_cause is None:
            self.abort_cause = cause

    def aborted_error(self) -> BatchAbortedError:
        """The error that stands for an item the batch will not attempt."""
        error = BatchAbortedError(
            f"Not sent: the batch stopped after an earlier failure ({self.abort_cause})."
        )
        error.__cause__ = self.abort_cause
        return error

    def for_item(self) -> RateLimiter:
        """A limiter for one item's attempts: the client's, with the batch's additions."""
        return _ItemGate(self)

    async def _space_out(self) -> None:
        """Wait for this attempt's slot under ``max_rate``."""
        assert self._max_rate is not None
        now = self._loop.time()
        slot = max(now, self._next_send_at)
        self._next_send_at = slot + 1.0 / self._max_rate
        if slot > now:
            await asyncio.sleep(slot - now)

    def _count_429(self, permit: Permit) -> None:
        stats = self._stats
        stats.rate_limited += 1
        now = self._loop.time()
        resume_at = now + (permit.retry_after or 0.0)
        stats.rate_limit_wait += max(0.0, resume_at - max(now, self._paused_until))
        self._paused_until = max(self._paused_until, resume_at)

    def _update_send_rate(self, operation: str) -> None:
        paces = [rate for rate in (self._limiter.pacing_rate(operation), self._max_rate) if rate]
        self._stats.send_rate = min(paces) if paces else None


class _ItemGate(RateLimiter):
    """The limiter of one item: the batch's cap, counters and abort around the client's limiter.

    Each attempt passes through here, so the common case (no cap, no abort, a success) is one
    coroutine and a few attribute reads; the rarer parts are methods of the batch.
    """

    def __init__(self, batch: BatchGate) -> None:
        self._batch = batch
        self._attempted = False
        self._follows_429 = False

    @property
    def limit(self) -> RateLimit | None:
        return self._batch._limiter.limit

    async def acquire(self, operation: str) -> Permit:
        batch = self._batch
        if batch.abort_cause is not None:
            raise batch.aborted_error()
        if batch._max_rate is not None:
            await batch._space_out()
        inner = batch._inner
        permit = Permit() if inner is None else await inner.acquire(operation)
        if self._batch.abort_cause is not None:  # a fatal failure while this attempt waited
            if inner is not None:
                await inner.release(operation, permit)
            raise batch.aborted_error()
        stats = batch._stats
        stats.attempts += 1
        if self._attempted and not self._follows_429:
            stats.retries += 1
        self._attempted = True
        return permit

    async def release(self, operation: str, permit: Permit) -> None:
        batch = self._batch
        self._follows_429 = permit.status == 429
        if self._follows_429:
            batch._count_429(permit)
        if batch._inner is not None:
            await batch._inner.release(operation, permit)
        if batch._paced:
            batch._update_send_rate(operation)
