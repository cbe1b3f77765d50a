"""The one rate-limit policy: a sliding log of starts, a shared pause after a 429, and learning.

``SlidingLogLimiter`` enforces a ``RateLimit`` per operation over a *store*: ``MemoryStore``
for one process (``LocalRateLimiter``), or Redis for many (``whop_async.redis``), so that both
behave the same. The policy is here, once; a store only keeps the log, the pause and what was
learned, and answers atomically.

* **The limit.** An attempt starts only if fewer than ``requests`` started in the last ``per``
  seconds (plus a small margin, ``safe_window``). Bursts up to the limit go at once.
* **A 429 pauses everyone** sending that operation through the store, for the wait Whop asked
  for, not only the call that met it.
* **After a wait, one goes first.** The first attempt let go after a pause, or after a wait
  for room in a learned window that has not yet proved right, goes alone: the others follow
  once it is answered. A window that was not what the limiter thought costs one 429, not as
  many as are let go in the time a 429 takes to come back (4 to 16 at concurrency 16 in
  ``benchmarks/rate_limits.py`` (b)); a right one costs one round trip. Once the first after a
  learned window's wait is accepted, that lesson is trusted and its windows go as bursts again
  (otherwise starts spread over a window would go one at a time, one round trip each).
* **Two logs.** The configured limit counts every start, refused or not: it is the most you
  let the client send. A learned budget stands for what the server accepts, and counts only the
  starts it did not refuse (Whop does not say whether a refused request counts; its emulator's
  does not, and against a fixed window it makes no difference). Refused starts counted there
  made every window after a lesson send part of its budget late
  (``benchmarks/rate_limits.py`` (b), ``benchmarks/shared_limit.py`` (c)).
* **Learning.** A 429 that asks for a wait of at least ``EVIDENCE_SHARE`` of the configured
  window is evidence of a smaller budget per window (another sender on the key, a shorter
  window). The requests of the burst it ends (those started since the last pause) that the
  server did not refuse, ``k``, over the time they took plus the wait asked, is what the
  server allows, but never over ``k`` waits: the limiter never paces slower than one request
  per wait asked. The limiter then also keeps that budget. Shorter waits (scattered 429s) are
  answered by the pause alone. The first 429 of a burst counts the requests still in flight as
  let through; each later one of the same burst (a straggler, in flight when the first came)
  has taken itself off the accepted log, and so off that count. The store keeps the latest
  burst's smallest count, so the lesson ends as the burst's successes, whatever order the
  answers arrive in, and however the starts of several processes interleave with their
  arrivals. The learned count holds for one configured window, then grows
  back by ``RECOVERY_PER_WINDOW`` of itself per configured window, and is dropped once it
  reaches the configured count. (Growing from the start cost a 429 every other window at the
  server's own budget: ``benchmarks/rate_limits.py`` (b), 18 429s against 16.)

Waiters are served first come, first served within a process: one at a time asks the store,
so a crowd of waiting calls is not woken for every slot, and a newcomer never overtakes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from typing import Final, NamedTuple, Protocol

from ._clock import Clock, LoopClock
from ._exceptions import InvalidParamsError
from ._ratelimit import (
    Permit,
    RateLimit,
    RateLimiter,
    Unlimited,
    WaitKind,
    pause_after_429,
    safe_window,
)

__all__ = [
    "EVIDENCE_SHARE",
    "RECOVERY_PER_WINDOW",
    "Admission",
    "Learned",
    "LocalRateLimiter",
    "MemoryStore",
    "PauseOutcome",
    "SlidingLogLimiter",
    "Store",
    "Window",
    "make_limiter",
]

#: A 429 teaches a smaller budget only if its wait is at least this share of the window.
EVIDENCE_SHARE: Final = 0.01
#: A learned count grows back by this share of itself per configured window.
RECOVERY_PER_WINDOW: Final = 0.1
#: The shortest sleep between two asks, so a wait rounded down to nothing is not a busy loop.
MIN_SLEEP: Final = 0.001
#: The longest the attempts behind a first one wait for its answer (seconds of the event loop),
#: should its release never come (a limiter driven by hand).
FIRST_ANSWER_TIMEOUT: Final = 30.0


class Learned(NamedTuple):
    """A budget taught by a 429: ``requests`` per ``per`` seconds, learned at ``at``."""

    requests: int
    per: float
    at: float
    burst: float
    """The burst it was learned from, named by the end of the pause before it (-inf: none)."""

    def replaced_by(self, other: Learned) -> bool:
        """Whether ``other`` is the better lesson: of a later burst, or of this one and smaller.

        A burst's 429s come back in any order, each counting one refusal more than the one
        before: keeping the smallest count keeps the last of them.
        """
        return other.burst > self.burst or (
            other.burst == self.burst and other.requests < self.requests
        )


class Admission(NamedTuple):
    """A store's answer to "may an attempt start now?"."""

    wait: float
    """0 when the attempt was admitted (and logged), else seconds until it may be."""
    now: float
    """The store's clock at the answer."""
    paused: bool
    """True when the wait is a pause after a 429 rather than a full window."""
    epoch: float
    """When the last pause ended (or ends), on the store's clock."""
    learned: Learned | None
    """The budget learned from 429s, as the store holds it."""


class PauseOutcome(NamedTuple):
    """What a store knew when it was told to pause after a 429."""

    starts: int
    """Starts not refused since the time asked about (that time included)."""
    first: float | None
    """The earliest of them."""
    refused: int
    """The 429s of the burst asked about, this one included; 0 when a later burst has had
    429s (this one is then too late to teach anything)."""


#: ``(requests, window)``: fewer than ``requests`` starts in the last ``window`` seconds.
Window = tuple[int, float]


class Store(Protocol):
    """Where a ``SlidingLogLimiter`` keeps its log, its pause and what it learned.

    Each method is one atomic step. Times are the store's own clock (Redis's for a shared one).
    """

    @property
    def shared(self) -> bool:
        """True when other processes draw from the same budget."""

    async def try_start(self, operation: str, limit: Window, learned: Window | None) -> Admission:
        """Admit and log an attempt if no pause is in force, ``limit`` holds over every start,
        and ``learned`` (if any) over the starts not refused."""

    async def pause(
        self, operation: str, seconds: float, *, since: float, burst: float, start: float
    ) -> PauseOutcome:
        """Push the pause out to ``seconds`` from now (never back), take the refused attempt
        (started at ``start``) off the starts not refused, count those since ``since``, and
        count this 429 among those of ``burst``."""

    async def learn(self, operation: str, budget: Learned, *, keep_for: float) -> Learned:
        """Hold ``budget`` (its ``at`` is ignored: the store stamps its own now) for
        ``keep_for`` seconds at most, unless the lesson held is better
        (``Learned.replaced_by``); return the lesson held."""


class _MemoryOperation:
    __slots__ = ("accepted", "learned", "pause_until", "refused", "starts")

    def __init__(self, requests: int) -> None:
        self.starts: deque[float] = deque(maxlen=requests)
        self.accepted: deque[float] = deque(maxlen=requests)
        """The starts not refused (a learned budget is below the configured one: it fits)."""
        self.pause_until = -math.inf
        self.learned: Learned | None = None
        self.refused = (-math.inf, 0)
        """The latest burst that met 429s, and how many."""


class MemoryStore:
    """A store in this process's memory, on ``clock`` (the event loop's by default)."""

    @property
    def shared(self) -> bool:
        return False

    def __init__(self, limit: RateLimit, *, clock: Clock | None = None) -> None:
        self._requests = limit.requests
        self._clock = clock or LoopClock()
        self._operations: dict[str, _MemoryOperation] = {}

    def _operation(self, operation: str) -> _MemoryOperation:
        state = self._operations.get(operation)
        if state is None:
            state = self._operations[operation] = _MemoryOperation(self._requests)
        return state

    async def try_start(self, operation: str, limit: Window, learned: Window | None) -> Admission:
        state = self._operation(operation)
        now = self._clock.now()
        if state.pause_until > now:
            return Admission(state.pause_until - now, now, True, state.pause_until, state.learned)
        wait = _wait_in(state.starts, limit, now)
        if learned is not None:
            wait = max(wait, _wait_in(state.accepted, learned, now))
        if wait > 0:
            return Admission(wait, now, False, state.pause_until, state.learned)
        state.starts.append(now)
        state.accepted.append(now)
        return Admission(0.0, now, False, state.pause_until, state.learned)

    async def pause(
        self, operation: str, seconds: float, *, since: float, burst: float, start: float
    ) -> PauseOutcome:
        state = self._operation(operation)
        with contextlib.suppress(ValueError):  # already gone: older than the longest window
            state.accepted.remove(start)
        state.pause_until = max(state.pause_until, self._clock.now() + seconds)
        latest, refused = state.refused
        if burst >= latest:
            refused = refused + 1 if burst == latest else 1
            state.refused = (burst, refused)
        else:
            refused = 0
        counted = [at for at in state.accepted if at >= since]
        return PauseOutcome(len(counted), counted[0] if counted else None, refused)

    async def learn(self, operation: str, budget: Learned, *, keep_for: float) -> Learned:
        state = self._operation(operation)
        if state.learned is None or state.learned.replaced_by(budget):
            state.learned = budget._replace(at=self._clock.now())
        return state.learned


def _wait_in(log: deque[float], window: Window, now: float) -> float:
    """Seconds until fewer than ``requests`` of ``log`` are in the last ``window`` seconds."""
    requests, seconds = window
    return log[-requests] + seconds - now if len(log) >= requests else 0.0


class _Operation:
    """This process's view of one operation: its queue, and the budget last seen learned."""

    __slots__ = (
        "first",
        "first_answered",
        "first_tests",
        "learned",
        "lock",
        "seen_at",
        "trusted",
        "wait_kind",
    )

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.first: Permit | None = None
        """The attempt let go alone after a wait, until it is answered."""
        self.first_answered: asyncio.Future[None] | None = None
        self.first_tests: Learned | None = None
        """The lesson whose window the first was let go by, if it was (not by a pause)."""
        self.trusted: Learned | None = None
        """The lesson whose window a first proved right: its waits need no first."""
        self.learned: Learned | None = None
        self.seen_at = 0.0
        self.wait_kind: WaitKind = "local"
        """Why the waiter at the head of the queue last slept."""


class SlidingLogLimiter(RateLimiter):
    """A ``RateLimit`` per operation, kept in ``store`` and tightened by the 429s it sees."""

    def __init__(self, limit: RateLimit, store: Store, *, clock: Clock | None = None) -> None:
        if not isinstance(limit, RateLimit):
            raise InvalidParamsError(
                "rate_limit", f"must be a RateLimit, got {type(limit).__name__}"
            )
        self._limit = limit
        self._store = store
        self._clock = clock or LoopClock()
        self._window = safe_window(limit.per)
        self._configured: Window = (limit.requests, self._window)
        self._operations: dict[str, _Operation] = {}

    @property
    def limit(self) -> RateLimit:
        return self._limit

    def _operation(self, operation: str) -> _Operation:
        state = self._operations.get(operation)
        if state is None:
            state = self._operations[operation] = _Operation()
        return state

    def _learned_requests(self, learned: Learned | None, now: float) -> int | None:
        """The learned count grown back since it was learned; ``None`` once fully recovered."""
        if learned is None:
            return None
        windows = max(0.0, now - learned.at - self._limit.per) / self._limit.per
        grown = math.floor(learned.requests * (1.0 + RECOVERY_PER_WINDOW) ** windows)
        return grown if grown < self._limit.requests else None

    def _learned_window(self, state: _Operation) -> Window | None:
        """The learned budget as it stands (grown back), or ``None`` when there is none."""
        learned = state.learned
        requests = self._learned_requests(learned, state.seen_at)
        if learned is None or requests is None:
            return None
        return requests, safe_window(learned.per)

    async def acquire(self, operation: str) -> Permit:
        state = self._operation(operation)
        entered = self._clock.now()
        queued = state.lock.locked()
        async with state.lock:  # first come, first served: queued here, one asks at a time
            answered = state.first_answered
            if answered is not None and not answered.done():
                await asyncio.wait([answered], timeout=FIRST_ANSWER_TIMEOUT)
            longest = 0.0
            paused = False
            while True:
                learned = self._learned_window(state)
                admission = await self._store.try_start(operation, self._configured, learned)
                state.learned, state.seen_at = admission.learned, admission.now
                if admission.wait <= 0:
                    break
                paused = paused or admission.paused
                sleep = max(admission.wait, MIN_SLEEP)
                if sleep >= longest:
                    longest = sleep
                    state.wait_kind = (
                        "pause" if admission.paused else "shared" if self._store.shared else "local"
                    )
                await self._clock.sleep(sleep)
        permit = Permit(admission.now)
        permit.epoch = admission.epoch
        if longest:
            untried = learned is not None and state.learned != state.trusted
            if paused or untried:  # the first after such a wait goes alone
                state.first = permit
                state.first_answered = asyncio.get_running_loop().create_future()
                state.first_tests = None if paused else state.learned
        if longest or queued:  # asleep itself, or queued behind one who was: the same wait
            permit.waited, permit.wait_kind = self._clock.now() - entered, state.wait_kind
        return permit

    async def release(self, operation: str, permit: Permit) -> None:
        state = self._operation(operation)
        if state.first is not permit:
            await self._learn_from(operation, permit)
            return
        if permit.status is not None and permit.status != 429 and state.first_tests is not None:
            state.trusted = state.first_tests  # its window proved right
        try:  # the pause, if any, is in force before the others go
            await self._learn_from(operation, permit)
        finally:
            state.first = None
            if state.first_answered is not None and not state.first_answered.done():
                state.first_answered.set_result(None)

    async def _learn_from(self, operation: str, permit: Permit) -> None:
        """Pause everyone after a 429, and learn a smaller budget from it if there is one."""
        if permit.status != 429:
            return
        asked = permit.retry_after
        wait = pause_after_429(asked)
        # The burst: the attempts let through since the last pause ended (at most a window).
        since = max(permit.epoch, permit.started_at - self._window)
        outcome = await self._store.pause(
            operation, wait, since=since, burst=permit.epoch, start=permit.started_at
        )
        if asked is None or asked < EVIDENCE_SHARE * self._limit.per:
            return  # no wait asked, or a short one: the pause answers it
        # No attempt starts while the pause holds: the burst's starts are all logged, and those
        # not refused yet (still in flight, or answered) count as let through.
        let_through = outcome.starts
        if outcome.refused < 1 or let_through < 1 or outcome.first is None:
            return
        if let_through >= self._limit.requests:
            return  # as many as configured got through: nothing stricter to learn
        # The server let k through in the span and frees room in w: its window is at most
        # span + w. It is never taken as longer than k * w, so the pace learned is never slower
        # than one request per wait asked (429s that are faults, not a limit, cannot collapse it).
        span = max(0.0, permit.started_at - outcome.first)
        budget = Learned(let_through, min(span + wait, let_through * wait), 0.0, permit.epoch)
        growth = math.log(self._limit.requests / budget.requests)
        windows_to_recover = growth / math.log1p(RECOVERY_PER_WINDOW)
        held = await self._store.learn(
            operation, budget, keep_for=(windows_to_recover + 2.0) * self._limit.per
        )
        self._operation(operation).learned = held  # known here at once, not only at the next ask

    def pacing_rate(self, operation: str) -> float | None:
        state = self._operations.get(operation)
        window = None if state is None else self._learned_window(state)
        if window is None:
            return None
        requests, seconds = window
        return min(requests / seconds, self._limit.rate)


class LocalRateLimiter(SlidingLogLimiter):
    """A ``RateLimit`` kept in this process (see ``SlidingLogLimiter`` for the policy).

    Args:
        limit: The limit per operation.
        clock: What pacing reads and sleeps on; the event loop's by default (tests pass a fake).
    """

    def __init__(self, limit: RateLimit, *, clock: Clock | None = None) -> None:
        if not isinstance(limit, RateLimit):
            raise InvalidParamsError(
                "rate_limit", f"must be a RateLimit, got {type(limit).__name__}"
            )
        super().__init__(limit, MemoryStore(limit, clock=clock), clock=clock)

    def __repr__(self) -> str:
        return f"LocalRateLimiter({self._limit!r})"


def make_limiter(
    rate_limit: RateLimit | RateLimiter | None, *, clock: Clock | None = None
) -> RateLimiter:
    """The limiter for ``AsyncWhop(rate_limit=...)``: one of yours, a local one, or none.

    Raises:
        InvalidParamsError: ``rate_limit`` is none of those.
    """
    if rate_limit is None:
        return Unlimited()
    if isinstance(rate_limit, RateLimiter):
        return rate_limit
    if isinstance(rate_limit, RateLimit):
        return LocalRateLimiter(rate_limit, clock=clock)
    raise InvalidParamsError(
        "rate_limit",
        f"must be a RateLimit, a RateLimiter or None, got {type(rate_limit).__name__}",
    )
