"""OpenTelemetry for whop_async: a span per call, a span per HTTP attempt, and metrics.

Install the extra (``pip install 'whop-async[otel]'``) and, once, in the application::

    from whop_async.otel import WhopAsyncInstrumentor

    WhopAsyncInstrumentor().instrument(tracer_provider=..., meter_provider=...)

Every client of the process then reports (the providers default to the global ones), until
``WhopAsyncInstrumentor().uninstrument()``. Like every OpenTelemetry instrumentor it is one
object per process: instrumenting twice only logs a warning.

What is reported (durations in seconds; the names are in ``docs/observability.md``):

* a span per call, named after its operation (``notifications.create``, kind ``INTERNAL``),
  current while the call runs, with an event for each wait of the rate limiter and for each
  retry;
* under it a span per HTTP attempt (named after the method, kind ``CLIENT``) after the HTTP
  client semantic conventions, current while the attempt is on the wire, so that the spans of an
  aiohttp instrumentation nest under it;
* ``http.client.request.duration`` per attempt; ``whop.client.retries`` and
  ``whop.client.rate_limited`` (429s) counters; ``whop.client.rate_limiter.wait.duration``, how
  long the rate limiter held each attempt (0 for most).

No attribute holds the API key or the idempotency key: a call is named by a hash of its key
(the ``key_hash`` of ``on_event``), and ``url.full`` never carries credentials.

The observer seam (``_observe.py``) calls one call's hooks in order, in the calling task, and
``call_ended`` always: so each span is made current with ``context.attach`` in one hook and
restored with ``detach`` in a later one, last in first out, and ``call_ended`` closes whatever
a cancellation left open.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Collection, Mapping
from contextvars import Token
from typing import Any, Final, NamedTuple

from opentelemetry import context, metrics, trace
from opentelemetry.context import Context

# The module opens with "# type: ignore", which hides it from mypy: its base class is Any.
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.metrics import MeterProvider
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_REQUEST_RESEND_COUNT,
    HTTP_RESPONSE_STATUS_CODE,
)
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.url_attributes import URL_FULL
from opentelemetry.semconv.metrics.http_metrics import HTTP_CLIENT_REQUEST_DURATION
from opentelemetry.semconv.schemas import Schemas
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.util.types import AttributeValue
from yarl import URL

from . import _observe
from ._events import key_hash
from ._exceptions import APIError, APIStatusError
from ._observe import AttemptOutcome, CallInfo, CallObserver
from ._ratelimit import Permit
from ._version import __version__

__all__ = ["WhopAsyncInstrumentor"]

_Attributes = dict[str, AttributeValue]

#: The HTTP client semantic conventions' advice for ``http.client.request.duration``.
_DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
#: Rate-limiter waits: 0 (most attempts) in a bucket of its own, up to Whop's minute window.
_WAIT_BUCKETS: Final = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# Attribute and event names of whop_async's own (docs/observability.md lists them).
_OPERATION: Final = "whop.operation"
_KEY_HASH: Final = "whop.idempotency_key.hash"
_ATTEMPTS: Final = "whop.attempts"
_ATTEMPT: Final = "whop.attempt"
_REQUEST_ID: Final = "whop.request_id"
_REPLAYED: Final = "whop.idempotent_replayed"
_WAIT_EVENT: Final = "whop.rate_limiter.wait"
_WAIT_KIND: Final = "whop.rate_limiter.wait.kind"
_WAIT_DURATION: Final = "whop.rate_limiter.wait.duration"
_RETRY_EVENT: Final = "whop.retry"
_RETRY_DELAY: Final = "whop.retry.delay"
_USES_RETRY: Final = "whop.retry.uses_retry"


class _Target(NamedTuple):
    url_full: str
    address: str
    port: int


@functools.lru_cache(maxsize=64)
def _target(url: str) -> _Target:
    """``url.full`` (userinfo redacted as the conventions ask), ``server.address``/``.port``."""
    parsed = URL(url)
    if parsed.user is not None or parsed.password is not None:
        parsed = parsed.with_user("REDACTED").with_password("REDACTED")
    return _Target(str(parsed), parsed.host or "", parsed.port or 0)


def _error_type(error: BaseException) -> str:
    return type(error).__qualname__


class _Telemetry:
    """The observer factory that ``instrument()`` registers: a tracer and the instruments."""

    def __init__(
        self, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None
    ) -> None:
        schema_url = Schemas.V1_23_1.value
        self.tracer = trace.get_tracer(
            "whop_async", __version__, tracer_provider, schema_url=schema_url
        )
        meter = metrics.get_meter("whop_async", __version__, meter_provider, schema_url)
        self.duration = meter.create_histogram(
            HTTP_CLIENT_REQUEST_DURATION,
            unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.retries = meter.create_counter(
            "whop.client.retries",
            unit="{retry}",
            description="Attempts of a call sent again after a failure or a 429.",
        )
        self.rate_limited = meter.create_counter(
            "whop.client.rate_limited",
            unit="{response}",
            description="429 responses received.",
        )
        self.limiter_wait = meter.create_histogram(
            "whop.client.rate_limiter.wait.duration",
            unit="s",
            description="How long the client's rate limiter held each attempt back.",
            explicit_bucket_boundaries_advisory=_WAIT_BUCKETS,
        )

    def start_call(self, call: CallInfo) -> CallObserver:
        return _CallTelemetry(self, call)


class _CallTelemetry(CallObserver):
    """One call's spans: the call's, then each attempt's in turn, each current while it runs."""

    def __init__(self, telemetry: _Telemetry, call: CallInfo) -> None:
        self._telemetry = telemetry
        self._call = call
        self._target = _target(call.url)
        self._span: trace.Span | None = None
        self._token: Token[Context] | None = None
        self._attempt = 0
        self._attempt_span: trace.Span | None = None
        self._attempt_token: Token[Context] | None = None
        self._sent_at = 0.0

    def call_started(self, call: CallInfo) -> None:
        self._span = self._telemetry.tracer.start_span(
            call.operation,
            kind=SpanKind.INTERNAL,
            attributes={_OPERATION: call.operation, _KEY_HASH: key_hash(call.idempotency_key)},
        )
        self._token = context.attach(trace.set_span_in_context(self._span))

    def attempt_started(self, attempt: int, permit: Permit) -> None:
        call, target = self._call, self._target
        operation: _Attributes = {_OPERATION: call.operation}
        if permit.waited and permit.wait_kind is not None:
            operation[_WAIT_KIND] = permit.wait_kind
            if self._span is not None:
                self._span.add_event(
                    _WAIT_EVENT,
                    {
                        _ATTEMPT: attempt,
                        _WAIT_KIND: permit.wait_kind,
                        _WAIT_DURATION: permit.waited,
                    },
                )
        self._telemetry.limiter_wait.record(permit.waited, operation)
        attributes: _Attributes = {
            HTTP_REQUEST_METHOD: call.method,
            URL_FULL: target.url_full,
            SERVER_ADDRESS: target.address,
            SERVER_PORT: target.port,
        }
        if attempt > 1:
            attributes[HTTP_REQUEST_RESEND_COUNT] = attempt - 1
        self._attempt = attempt
        self._attempt_span = self._telemetry.tracer.start_span(
            call.method, kind=SpanKind.CLIENT, attributes=attributes
        )
        self._attempt_token = context.attach(trace.set_span_in_context(self._attempt_span))
        self._sent_at = time.perf_counter()

    def attempt_ended(self, attempt: int, outcome: AttemptOutcome) -> None:
        if outcome.status == 429:
            self._telemetry.rate_limited.add(1, {_OPERATION: self._call.operation})
        self._end_attempt(outcome.status, outcome.error, outcome.headers, outcome.elapsed)

    def retry_scheduled(
        self, attempt: int, delay: float, error: APIError, uses_retry: bool
    ) -> None:
        status = error.status_code if isinstance(error, APIStatusError) else None
        reason = _attempt_error_type(status, error) or _error_type(error)
        self._telemetry.retries.add(
            1, {_OPERATION: self._call.operation, ERROR_TYPE: reason, _USES_RETRY: uses_retry}
        )
        if self._span is not None:
            self._span.add_event(
                _RETRY_EVENT,
                {
                    _ATTEMPT: attempt,
                    ERROR_TYPE: reason,
                    _RETRY_DELAY: delay,
                    _USES_RETRY: uses_retry,
                },
            )

    def call_ended(self, response: object | None, error: BaseException | None) -> None:
        if self._attempt_span is not None:  # cancelled (or stopped) while on the wire
            elapsed = time.perf_counter() - self._sent_at
            self._end_attempt(None, error, None, elapsed)
        span, self._span = self._span, None
        if span is None:
            return
        if self._token is not None:
            context.detach(self._token)
        span.set_attribute(_ATTEMPTS, self._attempt)
        if error is not None:
            error_type = _error_type(error)
            span.set_attribute(ERROR_TYPE, error_type)
            if isinstance(error, Exception):
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, str(error) or error_type))
            else:  # cancellation: marked, without an exception event (no fault of the call)
                span.set_status(Status(StatusCode.ERROR, error_type))
        span.end()

    def _end_attempt(
        self,
        status: int | None,
        error: BaseException | None,
        headers: Mapping[str, str] | None,
        elapsed: float,
    ) -> None:
        span, self._attempt_span = self._attempt_span, None
        if span is None:
            return
        if self._attempt_token is not None:
            context.detach(self._attempt_token)
        target = self._target
        measured: _Attributes = {
            HTTP_REQUEST_METHOD: self._call.method,
            SERVER_ADDRESS: target.address,
            SERVER_PORT: target.port,
        }
        if status is not None:
            measured[HTTP_RESPONSE_STATUS_CODE] = status
        error_type = _attempt_error_type(status, error)
        if error_type is not None:
            measured[ERROR_TYPE] = error_type
        self._telemetry.duration.record(max(elapsed, 0.0), measured)
        if span.is_recording():
            span.set_attributes(measured)
            if headers is not None:
                request_id = headers.get("x-request-id")
                if request_id is not None:
                    span.set_attribute(_REQUEST_ID, request_id)
                span.set_attribute(_REPLAYED, headers.get("Idempotent-Replayed") == "true")
            if error_type is not None:
                # For a status, the code says it all (the conventions leave no description).
                failed = status is None or status < 400
                description = (str(error) or error_type) if failed and error else None
                span.set_status(Status(StatusCode.ERROR, description))
        span.end()


def _attempt_error_type(status: int | None, error: BaseException | None) -> str | None:
    """``error.type`` of an attempt: its status when 4xx/5xx, else the error's class name."""
    if status is not None and status >= 400:
        return str(status)
    return None if error is None else _error_type(error)


class WhopAsyncInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces and measures every call of every ``AsyncWhop`` of the process.

    ``instrument(tracer_provider=..., meter_provider=...)`` starts reporting (each provider
    defaults to the global one) and ``uninstrument()`` stops; calls already running finish
    their spans. One instance per process, as OpenTelemetry's instrumentors are: a second
    ``instrument()`` only logs a warning.
    """

    _telemetry: _Telemetry | None = None

    def instrument(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        **kwargs: Any,
    ) -> None:
        """Start reporting every call to these providers (the global ones by default)."""
        super().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider, **kwargs)

    def uninstrument(self, **kwargs: Any) -> None:
        """Stop reporting; calls already running finish their spans."""
        super().uninstrument(**kwargs)

    def instrumentation_dependencies(self) -> Collection[str]:
        """Nothing to check: the instrumented library is the one this module ships in."""
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        telemetry = _Telemetry(kwargs.get("tracer_provider"), kwargs.get("meter_provider"))
        self._telemetry = telemetry
        _observe.instrument(telemetry)

    def _uninstrument(self, **kwargs: Any) -> None:
        if self._telemetry is not None:
            _observe.uninstrument(self._telemetry)
            self._telemetry = None
