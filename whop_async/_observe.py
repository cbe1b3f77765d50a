"""The request loop's one seam: observers that watch every call and every attempt.

Rate limiting is the limiter's job (``_ratelimit.py``); everything else that wants to see each
attempt plugs in here, as Stainless's per-attempt options and httpx's event hooks do: a bulk
send's counters, pacing and stop (``_bulk.py``), the ``on_event`` hooks (``_events.py``) and
OpenTelemetry (``whop_async.otel``). For each call the loop gathers:

* the call observers that the client's factories make for it (``on_event``, instrumentation);
* the ones bound to the running context with ``observing(...)`` (a bulk item's).

A ``CallObserver`` only watches, except ``before_attempt``, which runs before an attempt asks
the rate limiter and may hold it back (a pace of its own: the loop waits on its clock) or raise
a ``WhopError`` to end the call without sending. The loop calls ``call_started`` first; then,
per attempt, ``before_attempt``, ``attempt_started`` (the limiter let it go; it is about to be
sent), ``attempt_ended``, and ``retry_scheduled`` when another attempt follows; and
``call_ended`` once, however the call ends.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from ._exceptions import APIError
    from ._ratelimit import Permit

__all__ = [
    "AttemptOutcome",
    "CallInfo",
    "CallObserver",
    "ObserverFactory",
    "instrument",
    "observers_for",
    "observing",
    "uninstrument",
]


class CallInfo(NamedTuple):
    """What a call is: its operation, its request line, and its idempotency key."""

    operation: str
    """The API operation, e.g. ``"notifications.create"``."""
    method: str
    url: str
    """The full URL; it never holds credentials."""
    limiter_key: str
    """The rate limiter's name for the operation, e.g. ``"POST /notifications"``."""
    idempotency_key: str
    """The key every attempt carries (observers that export data must hash it)."""

    def __repr__(self) -> str:  # the key stays out of reprs and logs
        return f"CallInfo({self.operation!r}, {self.method} {self.url})"


class AttemptOutcome(NamedTuple):
    """How one attempt ended."""

    status: int | None
    """The HTTP status, or ``None`` when no response arrived."""
    error: APIError | None
    """The error the attempt ended in, ``None`` for a 2xx that parsed."""
    elapsed: float
    """Seconds from sending to the last byte read (the limiter's wait excluded)."""
    headers: Mapping[str, str] | None
    """The response's headers, when a response arrived."""

    @property
    def request_id(self) -> str | None:
        """Whop's ``x-request-id``, when a response carried one."""
        return None if self.headers is None else self.headers.get("x-request-id")

    @property
    def replayed(self) -> bool:
        """True when Whop answered from a stored first answer (``Idempotent-Replayed: true``)."""
        return self.headers is not None and self.headers.get("Idempotent-Replayed") == "true"


class CallObserver:
    """Watches one call; override what you need (every method here does nothing)."""

    def call_started(self, call: CallInfo) -> None:
        """The call is checked and serialized, and about to make its first attempt."""

    def before_attempt(self, attempt: int) -> float:
        """Attempt number ``attempt`` (from 1) is about to ask the rate limiter.

        Returns the seconds to hold it back first (0 to let it go), or raises a ``WhopError``
        to end the call without sending it.
        """
        return 0.0

    def attempt_started(self, attempt: int, permit: Permit) -> None:
        """The limiter let the attempt go (``permit.waited`` says how long it held it)."""

    def attempt_ended(self, attempt: int, outcome: AttemptOutcome) -> None:
        """The attempt has its outcome."""

    def retry_scheduled(
        self, attempt: int, delay: float, error: APIError, uses_retry: bool
    ) -> None:
        """Another attempt follows after ``delay`` seconds; ``uses_retry`` is False for a 429
        that is waited out within ``max_rate_limit_wait``."""

    def call_ended(self, response: object | None, error: BaseException | None) -> None:
        """The call is over: a response, or the error (cancellation included) it ended in."""


class ObserverFactory(Protocol):
    """Makes the observer of each call (``None`` when it has no interest in that call)."""

    def start_call(self, call: CallInfo) -> CallObserver | None: ...


_bound: contextvars.ContextVar[tuple[CallObserver, ...]] = contextvars.ContextVar(
    "whop_async_observers", default=()
)
_instrumentations: list[ObserverFactory] = []


class observing:
    """``with observing(*observers):``: calls started in this context (this task) report to
    ``observers`` too."""

    __slots__ = ("_observers", "_token")

    def __init__(self, *observers: CallObserver) -> None:
        self._observers = observers

    def __enter__(self) -> None:
        self._token = _bound.set((*_bound.get(), *self._observers))

    def __exit__(self, *exc_info: object) -> None:
        _bound.reset(self._token)


def instrument(factory: ObserverFactory) -> None:
    """Make every client of the process report to ``factory``'s observers (OpenTelemetry).

    Process-wide on purpose, as OpenTelemetry instrumentors are: the application asks for it.
    """
    if factory not in _instrumentations:
        _instrumentations.append(factory)


def uninstrument(factory: ObserverFactory) -> None:
    """Undo ``instrument(factory)``."""
    if factory in _instrumentations:
        _instrumentations.remove(factory)


def observers_for(call: CallInfo, factories: Sequence[ObserverFactory]) -> Sequence[CallObserver]:
    """The observers of one call: the client's factories', instrumentation's, the context's."""
    if not factories and not _instrumentations:
        return _bound.get()
    observers: list[CallObserver] = []
    for factory in (*factories, *_instrumentations):
        observer = factory.start_call(call)
        if observer is not None:
            observers.append(observer)
    observers.extend(_bound.get())
    return observers
