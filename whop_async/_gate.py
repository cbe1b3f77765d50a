"""The gate a bulk send puts in front of every attempt: shared pauses, pacing, abort.

One gate serves a whole batch. It does three things the batch needs and a single call does not:

* a 429 pauses every worker until the server's ``Retry-After`` (not each on its own), and that
  retry does not use the item's retry budget; the total time paused is bounded;
* after a 429 the batch paces itself (AIMD on the send rate): the rate drops to 90% of what got
  through in the last second, then grows back by about 1% a second, so it settles just under
  the server's limit instead of hitting it again and again; ``max_rate`` caps it from the start;
* a fatal failure (401, 403, closed client) turns every later attempt into ``BatchAbortedError``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final

import attrs

from ._exceptions import BatchAbortedError

__all__ = ["BatchGate", "BulkStats"]

#: A 429 pauses the batch at least this long, so that even an instant backoff advances the clock
#: that ``max_rate_limit_wait`` bounds.
MIN_RATE_LIMIT_PAUSE: Final = 0.05
#: After a 429 the send rate becomes this fraction of the rate that got through in the last
#: second (or since the batch started, when that is shorter).
RATE_DECREASE: Final = 0.9
#: Growth of the send rate per second of successes, as a fraction.
RATE_INCREASE_PER_SECOND: Final = 0.01
#: Fewer successes than this in the last second say nothing useful about the server's limit.
MIN_SUCCESSES_TO_PACE: Final = 5
_WINDOW: Final = 1.0


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
    """Retries that used an item's retry budget (5xx, timeouts, dropped connections)."""
    rate_limited: int = 0
    """429 answers received."""
    rate_limit_wait: float = 0.0
    """Seconds the batch spent paused by 429s."""
    send_rate: float | None = None
    """The pacing rate in requests per second, once a 429 (or ``max_rate``) set one."""


class BatchGate:
    """Shared state of one bulk send's attempts; see the module docstring."""

    def __init__(
        self,
        *,
        max_rate: float | None,
        max_rate_limit_wait: float,
        stats: BulkStats,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.time()
        self._max_rate = max_rate
        self._rate = max_rate
        self._max_rate_limit_wait = max_rate_limit_wait
        self._stats = stats
        self._stats.send_rate = max_rate
        self._pause_until = 0.0
        self._next_send_at = 0.0
        self._recent_successes: deque[float] = deque()
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

    async def acquire(self) -> None:
        """Wait until the batch may send: no pause in force and a pacing slot free."""
        loop = self._loop
        while True:
            if self.abort_cause is not None:
                raise self.aborted_error()
            now = loop.time()
            if now >= self._pause_until:
                break
            await asyncio.sleep(self._pause_until - now)
        self._stats.attempts += 1
        if self._rate is not None:
            slot = max(now, self._next_send_at)
            self._next_send_at = slot + 1.0 / self._rate
            if slot > now:
                await asyncio.sleep(slot - now)

    def release(self, status: int | None) -> None:
        """Learn how an attempt ended: a status, or ``None`` for no response."""
        if status is None or not 200 <= status < 300:
            return
        now = self._loop.time()
        self._recent_successes.append(now)
        self._forget_before(now - _WINDOW)
        if self._rate is not None:
            grown = self._rate * (1.0 + RATE_INCREASE_PER_SECOND / self._rate)
            self._rate = grown if self._max_rate is None else min(grown, self._max_rate)
            self._stats.send_rate = self._rate

    def rate_limited(self, delay: float) -> bool:
        """Pause the batch for ``delay`` seconds after a 429; False once the wait bound is spent.

        The first 429 of an episode (one that arrives while no pause is in force) also lowers
        the send rate.
        """
        self._stats.rate_limited += 1
        now = self._loop.time()
        delay = max(delay, MIN_RATE_LIMIT_PAUSE)
        if now >= self._pause_until:
            self._forget_before(now - _WINDOW)
            through = len(self._recent_successes)
            if through >= MIN_SUCCESSES_TO_PACE:
                # Early in a batch the window is shorter than a second: divide by what it covers.
                covered = min(_WINDOW, max(now - self._started, 1e-3))
                lowered = RATE_DECREASE * through / covered
                self._rate = lowered if self._rate is None else min(self._rate, lowered)
                self._stats.send_rate = self._rate
            self._recent_successes.clear()
        resume_at = now + delay
        if resume_at > self._pause_until:
            added = resume_at - max(now, self._pause_until)
            if self._stats.rate_limit_wait + added > self._max_rate_limit_wait:
                return False
            self._stats.rate_limit_wait += added
            self._pause_until = resume_at
        return True

    def _forget_before(self, moment: float) -> None:
        recent = self._recent_successes
        while recent and recent[0] < moment:
            recent.popleft()

    def retrying(self) -> None:
        """Count a retry that uses the item's own budget."""
        self._stats.retries += 1
