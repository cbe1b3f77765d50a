"""The gate a bulk send puts in front of every attempt: shared pauses, pacing, abort.

One gate serves a whole batch. It does three things the batch needs and a single call does not:

* a 429 pauses every worker until the server's ``Retry-After`` (not each on its own), and that
  retry does not use the item's retry budget; the total time paused is bounded;
* when 429s are a real share of the last second's answers (10% or more: the batch is sending
  faster than the server allows), the batch paces itself (AIMD on the send rate): the rate drops
  to 90% of what got through in that second, at most once a second, then grows back by about 1%
  a second, so it settles just under the server's limit instead of hitting it again and again.
  A stray 429 now and then pauses the batch but does not slow it down for good. ``max_rate``
  caps the rate from the start;
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
#: The send rate is lowered only when 429s are at least this share of the last second's answers.
RATE_LIMITED_SHARE: Final = 0.1
#: ... and only when the last second holds at least this many successes and two 429s: fewer say
#: nothing useful about the server's limit.
MIN_SUCCESSES_TO_PACE: Final = 5
MIN_429S_TO_PACE: Final = 2
#: A lowered send rate is this fraction of the successes of the last second.
RATE_DECREASE: Final = 0.9
#: Growth of the send rate per second of successes, as a fraction.
RATE_INCREASE_PER_SECOND: Final = 0.01
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
        self._max_rate = max_rate
        self._rate = max_rate
        self._max_rate_limit_wait = max_rate_limit_wait
        self._stats = stats
        self._stats.send_rate = max_rate
        self._pause_until = 0.0
        self._next_send_at = 0.0
        self._recent_successes: deque[float] = deque()
        self._recent_429s: deque[float] = deque()
        self._lowered_at = -_WINDOW
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
        _forget_before(self._recent_successes, now - _WINDOW)
        if self._rate is not None:
            grown = self._rate * (1.0 + RATE_INCREASE_PER_SECOND / self._rate)
            self._rate = grown if self._max_rate is None else min(grown, self._max_rate)
            self._stats.send_rate = self._rate

    def rate_limited(self, delay: float) -> bool:
        """Pause the batch for ``delay`` seconds after a 429; False once the wait bound is spent.

        Also lowers the send rate when 429s have become a real share of the answers.
        """
        self._stats.rate_limited += 1
        now = self._loop.time()
        self._recent_429s.append(now)
        self._maybe_lower_rate(now)
        delay = max(delay, MIN_RATE_LIMIT_PAUSE)
        resume_at = now + delay
        if resume_at > self._pause_until:
            added = resume_at - max(now, self._pause_until)
            if self._stats.rate_limit_wait + added > self._max_rate_limit_wait:
                return False
            self._stats.rate_limit_wait += added
            self._pause_until = resume_at
        return True

    def _maybe_lower_rate(self, now: float) -> None:
        if now - self._lowered_at < _WINDOW:
            return
        _forget_before(self._recent_successes, now - _WINDOW)
        _forget_before(self._recent_429s, now - _WINDOW)
        successes, limited = len(self._recent_successes), len(self._recent_429s)
        if (
            successes < MIN_SUCCESSES_TO_PACE
            or limited < MIN_429S_TO_PACE
            or limited < RATE_LIMITED_SHARE * (successes + limited)
        ):
            return
        # What got through in the last second is what the server allows in a second, whether
        # it came in a burst (a token bucket refilled) or spread over the whole second.
        lowered = RATE_DECREASE * successes / _WINDOW
        self._rate = lowered if self._rate is None else min(self._rate, lowered)
        self._stats.send_rate = self._rate
        self._lowered_at = now

    def retrying(self) -> None:
        """Count a retry that uses the item's own budget."""
        self._stats.retries += 1


def _forget_before(moments: deque[float], moment: float) -> None:
    while moments and moments[0] < moment:
        moments.popleft()
