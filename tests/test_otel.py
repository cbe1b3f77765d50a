"""whop_async.otel: spans and metrics through the real OpenTelemetry SDK, over real sockets.

Each test instruments with its own SDK providers (an in-memory span exporter, an in-memory
metric reader), talks to the emulator, and reads what was exported. After every test, no span
and no metric point may hold the API key or an idempotency key the emulator saw.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

import aiohttp
import attrs
import pytest
from optional import require

OTEL = "pip install 'whop-async[otel]' opentelemetry-sdk"
require("opentelemetry.sdk", OTEL)
require("opentelemetry.instrumentation", OTEL)

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from whop_async import (  # noqa: E402
    APIConnectionError,
    AsyncWhop,
    Backoff,
    RateLimitError,
    gather_notifications,
)
from whop_async._events import key_hash  # noqa: E402
from whop_async.otel import WhopAsyncInstrumentor, _target  # noqa: E402
from whop_async.testing import FakeClock, Fault, ScriptedResponse, WhopEmulator  # noqa: E402

MakeClient = Callable[..., AsyncWhop]
SEND: dict[str, Any] = {"account_id": "biz_1", "title": "Hi", "content": "Hello"}
CALL = "notifications.create"


@attrs.define
class Telemetry:
    """What one test's SDK providers received."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    @property
    def tracer(self) -> trace.Tracer:
        """The application's tracer, on the same provider."""
        return self.tracer_provider.get_tracer("app")

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """Finished spans (of that name), in the order they ended."""
        spans = self.exporter.get_finished_spans()
        return [span for span in spans if name is None or span.name == name]

    def points(self, metric: str) -> list[Any]:
        """Every data point of ``metric`` (cumulative), ``[]`` when it has none."""
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for found in scope.metrics
            if found.name == metric
            for point in found.data.data_points
        ]

    def texts(self) -> Iterator[str]:
        """Every name, attribute key and value, event and status of every span and point."""
        for span in self.spans():
            yield span.name
            yield str(span.status.description)
            yield from _flatten(span.attributes)
            for event in span.events:
                yield event.name
                yield from _flatten(event.attributes)
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    yield metric.name
                    for point in metric.data.data_points:
                        yield from _flatten(point.attributes)


def _flatten(attributes: Any) -> Iterator[str]:
    for key, value in (attributes or {}).items():
        yield key
        yield str(value)


def attributes(span: ReadableSpan) -> Mapping[str, Any]:
    return span.attributes or {}


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


@pytest.fixture
async def otel(whop_emulator: WhopEmulator) -> AsyncIterator[Telemetry]:
    """Instrument with fresh SDK providers; afterwards check that nothing holds a secret."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry = Telemetry(exporter, reader, tracer_provider, meter_provider)
    instrumentor = WhopAsyncInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        yield telemetry
    finally:
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        secrets = [str(whop_emulator.api_key), *filter(None, whop_emulator.idempotency_keys())]
        leaked = [text for text in telemetry.texts() for secret in secrets if secret in text]
        meter_provider.shutdown()
        tracer_provider.shutdown()
    assert not leaked, f"a secret reached the telemetry: {leaked}"


def assert_attempt(
    span: ReadableSpan, server: WhopEmulator, *, resend: int, status: int | None
) -> None:
    """An attempt span after the HTTP client conventions."""
    assert (span.name, span.kind) == ("POST", SpanKind.CLIENT)
    attributes = span.attributes or {}
    assert attributes["http.request.method"] == "POST"
    assert attributes["url.full"] == f"{server.base_url}/notifications"
    assert (attributes["server.address"], attributes["server.port"]) == ("127.0.0.1", server.port)
    assert attributes.get("http.request.resend_count") == (resend or None)
    assert attributes.get("http.response.status_code") == status


def counts(points: Sequence[Any], key: str) -> dict[Any, int]:
    """A histogram's counts by the value of one attribute."""
    found: dict[Any, int] = {}
    for point in points:
        value = point.attributes.get(key)
        found[value] = found.get(value, 0) + point.count
    return found


async def test_a_call_is_a_span_over_one_client_span_per_attempt(
    make_client: MakeClient, whop_emulator: WhopEmulator, otel: Telemetry
) -> None:
    client = make_client()

    with otel.tracer.start_as_current_span("app") as app:
        response = await client.notifications.create(**SEND, idempotency_key="order-1")
        assert trace.get_current_span() is app  # the call left the context as it found it

    call, attempt = otel.spans(CALL), otel.spans("POST")
    assert len(call) == len(attempt) == 1
    assert (call[0].kind, parent_of(call[0])) == (SpanKind.INTERNAL, app.get_span_context().span_id)
    assert call[0].attributes == {
        "whop.operation": CALL,
        "whop.idempotency_key.hash": key_hash("order-1"),
        "whop.attempts": 1,
    }
    assert call[0].status.status_code is StatusCode.UNSET
    assert call[0].events == ()
    assert parent_of(attempt[0]) == span_id(call[0])
    assert_attempt(attempt[0], whop_emulator, resend=0, status=200)
    assert attempt[0].attributes is not None
    assert attempt[0].attributes["whop.request_id"] == response.request_id
    assert attempt[0].attributes["whop.idempotent_replayed"] is False
    assert "error.type" not in attempt[0].attributes
    assert attempt[0].status.status_code is StatusCode.UNSET

    (duration,) = otel.points("http.client.request.duration")
    assert duration.count == 1
    assert dict(duration.attributes) == {
        "http.request.method": "POST",
        "server.address": "127.0.0.1",
        "server.port": whop_emulator.port,
        "http.response.status_code": 200,
    }
    (wait,) = otel.points("whop.client.rate_limiter.wait.duration")
    assert (wait.count, wait.sum, dict(wait.attributes)) == (1, 0, {"whop.operation": CALL})
    assert otel.points("whop.client.retries") == []
    assert otel.points("whop.client.rate_limited") == []


async def test_the_attempt_span_is_current_while_the_request_is_on_the_wire(
    whop_emulator: WhopEmulator, otel: Telemetry
) -> None:
    # An aiohttp instrumentation's spans start in on_request_start: they nest under the attempt.
    current: list[trace.SpanContext] = []

    async def on_request_start(*_: object) -> None:
        current.append(trace.get_current_span().get_span_context())

    tracing = aiohttp.TraceConfig()
    tracing.on_request_start.append(on_request_start)
    async with (
        aiohttp.ClientSession(trace_configs=[tracing]) as session,
        AsyncWhop(
            whop_emulator.api_key, base_url=whop_emulator.base_url, session=session
        ) as client,
    ):
        await client.notifications.create(**SEND)

    (attempt,) = otel.spans("POST")
    assert current == [attempt.get_span_context()]


async def test_a_retried_5xx_is_two_attempt_spans_and_a_retry_event(
    make_client: MakeClient, whop_emulator: WhopEmulator, otel: Telemetry
) -> None:
    client = make_client(max_retries=2)
    whop_emulator.fail_next(1, status=503)

    await client.notifications.create(**SEND)

    (call,) = otel.spans(CALL)
    failed, succeeded = otel.spans("POST")
    assert_attempt(failed, whop_emulator, resend=0, status=503)
    assert_attempt(succeeded, whop_emulator, resend=1, status=200)
    assert attributes(failed)["error.type"] == "503"
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description is None  # the status code says it all
    assert succeeded.status.status_code is StatusCode.UNSET
    assert {parent_of(failed), parent_of(succeeded)} == {span_id(call)}
    assert call.status.status_code is StatusCode.UNSET
    assert attributes(call)["whop.attempts"] == 2
    (retry,) = call.events
    assert (retry.name, dict(retry.attributes or {})) == (
        "whop.retry",
        {"whop.attempt": 1, "error.type": "503", "whop.retry.delay": 0.0,
         "whop.retry.uses_retry": True},
    )  # fmt: skip

    (retries,) = otel.points("whop.client.retries")
    assert retries.value == 1
    assert dict(retries.attributes) == {
        "whop.operation": CALL,
        "error.type": "503",
        "whop.retry.uses_retry": True,
    }
    durations = otel.points("http.client.request.duration")
    assert counts(durations, "http.response.status_code") == {503: 1, 200: 1}
    assert counts(durations, "error.type") == {"503": 1, None: 1}
    assert sum(point.count for point in durations) == whop_emulator.request_count == 2


async def test_a_429_waited_out_is_counted_and_costs_no_retry(
    make_client: MakeClient, whop_emulator: WhopEmulator, otel: Telemetry
) -> None:
    client = make_client(max_retries=0)
    whop_emulator.fail_next(1, status=429, headers={"retry-after-ms": "20"})

    await client.notifications.create(**SEND)

    limited, succeeded = otel.spans("POST")
    assert_attempt(limited, whop_emulator, resend=0, status=429)
    assert_attempt(succeeded, whop_emulator, resend=1, status=200)
    assert attributes(limited)["error.type"] == "429"
    (call,) = otel.spans(CALL)
    (retry,) = call.events
    assert retry.attributes is not None
    assert (retry.attributes["error.type"], retry.attributes["whop.retry.uses_retry"]) == (
        "429",
        False,
    )
    assert retry.attributes["whop.retry.delay"] == 0.05  # the minimum pause after a 429

    (rate_limited,) = otel.points("whop.client.rate_limited")
    assert (rate_limited.value, dict(rate_limited.attributes)) == (1, {"whop.operation": CALL})
    (retries,) = otel.points("whop.client.retries")
    assert retries.value == 1
    assert retries.attributes["whop.retry.uses_retry"] is False


async def test_a_pause_after_a_429_is_a_wait_event_and_a_wait_histogram_point(
    whop_emulator: WhopEmulator, otel: Telemetry
) -> None:
    # Time is the fake clock's: the limiter pauses the operation 5 s, the next call waits it.
    whop_emulator.fail_next(1, status=429, headers={"Retry-After": "5"})
    async with AsyncWhop(
        whop_emulator.api_key,
        base_url=whop_emulator.base_url,
        max_retries=0,
        max_rate_limit_wait=0,
        clock=FakeClock(auto_advance=True),
    ) as client:
        with pytest.raises(RateLimitError):
            await client.notifications.create(**SEND)
        await client.notifications.create(**SEND)

    refused, waited = otel.spans(CALL)
    assert attributes(refused)["error.type"] == "RateLimitError"
    assert refused.status.status_code is StatusCode.ERROR
    assert [event.name for event in refused.events] == ["exception"]
    (wait,) = waited.events
    assert wait.name == "whop.rate_limiter.wait"
    assert wait.attributes is not None
    assert (wait.attributes["whop.attempt"], wait.attributes["whop.rate_limiter.wait.kind"]) == (
        1,
        "pause",
    )
    assert wait.attributes["whop.rate_limiter.wait.duration"] == pytest.approx(5.0)

    waits = otel.points("whop.client.rate_limiter.wait.duration")
    assert counts(waits, "whop.rate_limiter.wait.kind") == {None: 1, "pause": 1}
    (paused,) = [point for point in waits if point.attributes.get("whop.rate_limiter.wait.kind")]
    assert paused.sum == pytest.approx(5.0)


async def test_a_connection_failure_is_an_error_type_without_a_status(
    whop_emulator: WhopEmulator, otel: Telemetry
) -> None:
    await whop_emulator.stop()  # nothing listens there any more
    async with AsyncWhop(
        whop_emulator.api_key,
        base_url=whop_emulator.base_url,
        max_retries=1,
        backoff=Backoff.instant(),
    ) as client:
        with pytest.raises(APIConnectionError):
            await client.notifications.create(**SEND)

    first, second = otel.spans("POST")
    for attempt, resend in ((first, 0), (second, 1)):
        assert_attempt(attempt, whop_emulator, resend=resend, status=None)
        assert attempt.attributes is not None
        assert attempt.attributes["error.type"] == "APIConnectionError"
        assert attempt.status.status_code is StatusCode.ERROR
        assert attempt.status.description  # what went wrong, in words
        assert "whop.request_id" not in attempt.attributes
    (call,) = otel.spans(CALL)
    assert attributes(call)["error.type"] == "APIConnectionError"
    assert call.status.status_code is StatusCode.ERROR
    assert [event.name for event in call.events] == ["whop.retry", "exception"]
    durations = otel.points("http.client.request.duration")
    assert counts(durations, "error.type") == {"APIConnectionError": 2}
    assert all("http.response.status_code" not in point.attributes for point in durations)


async def test_a_cancelled_call_ends_both_spans_and_restores_the_context(
    make_client: MakeClient, whop_emulator: WhopEmulator, otel: Telemetry
) -> None:
    client = make_client()
    whop_emulator.script(ScriptedResponse(fault=Fault.HANG))
    restored: list[bool] = []

    async def send() -> None:
        with otel.tracer.start_as_current_span("app") as app:
            try:
                await client.notifications.create(**SEND)
            finally:
                restored.append(trace.get_current_span() is app)

    task = asyncio.ensure_future(send())
    for _ in range(500):
        if whop_emulator.in_flight:
            break
        await asyncio.sleep(0.01)
    assert whop_emulator.in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert restored == [True]
    (app,) = otel.spans("app")
    (call,) = otel.spans(CALL)
    (attempt,) = otel.spans("POST")
    assert parent_of(call) == span_id(app)
    for span in (attempt, call):
        assert attributes(span)["error.type"] == "CancelledError"
        assert span.status.status_code is StatusCode.ERROR
    assert_attempt(attempt, whop_emulator, resend=0, status=None)
    assert call.events == ()  # a cancellation is no exception of the call's own
    (duration,) = otel.points("http.client.request.duration")
    assert duration.attributes["error.type"] == "CancelledError"


async def test_a_bulk_send_is_one_call_span_per_item_under_the_callers_span(
    make_client: MakeClient, whop_emulator: WhopEmulator, otel: Telemetry
) -> None:
    client = make_client(max_retries=2)
    whop_emulator.fail_next(2, status=500)

    with otel.tracer.start_as_current_span("batch") as batch:
        results = await gather_notifications(client, [dict(SEND) for _ in range(6)], concurrency=3)

    assert len(results) == 6
    calls = otel.spans(CALL)
    assert len(calls) == 6
    assert {parent_of(call) for call in calls} == {batch.get_span_context().span_id}
    assert len({(call.attributes or {})["whop.idempotency_key.hash"] for call in calls}) == 6
    attempts = otel.spans("POST")
    assert {parent_of(attempt) for attempt in attempts} == {span_id(call) for call in calls}
    # The counters match the wire.
    assert len(attempts) == whop_emulator.request_count == 8
    durations = otel.points("http.client.request.duration")
    assert sum(point.count for point in durations) == 8
    assert counts(durations, "http.response.status_code") == {500: 2, 200: 6}
    (retries,) = otel.points("whop.client.retries")
    assert retries.value == 2
    assert sum(point.count for point in otel.points("whop.client.rate_limiter.wait.duration")) == 8


async def test_uninstrument_stops_reporting_and_instrument_starts_again(
    make_client: MakeClient, otel: Telemetry
) -> None:
    client = make_client()
    instrumentor = WhopAsyncInstrumentor()

    instrumentor.uninstrument()
    await client.notifications.create(**SEND)
    assert otel.spans() == []
    assert otel.points("http.client.request.duration") == []

    instrumentor.instrument(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
    )
    await client.notifications.create(**SEND)
    assert [span.name for span in otel.spans()] == ["POST", CALL]


async def test_instrumenting_twice_is_harmless(
    make_client: MakeClient, otel: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    other = InMemorySpanExporter()
    other_provider = TracerProvider()
    other_provider.add_span_processor(SimpleSpanProcessor(other))

    with caplog.at_level(logging.WARNING):
        WhopAsyncInstrumentor().instrument(tracer_provider=other_provider)
    await make_client().notifications.create(**SEND)

    assert WhopAsyncInstrumentor() is WhopAsyncInstrumentor()
    assert "already instrumented" in caplog.text
    assert [span.name for span in otel.spans()] == ["POST", CALL]  # once, to the first provider
    assert other.get_finished_spans() == ()
    other_provider.shutdown()


async def test_without_providers_it_reports_to_the_global_ones_and_calls_go_on(
    make_client: MakeClient, otel: Telemetry
) -> None:
    # No SDK is set globally here: the global providers are no-ops, and nothing is recorded.
    instrumentor = WhopAsyncInstrumentor()
    instrumentor.uninstrument()
    instrumentor.instrument()

    response = await make_client().notifications.create(**SEND)

    assert response.success
    assert otel.spans() == []


async def test_no_span_event_or_metric_holds_the_api_key_or_the_idempotency_key(
    make_client: MakeClient, whop_emulator: WhopEmulator, otel: Telemetry
) -> None:
    client = make_client(max_retries=2)
    whop_emulator.fail_next(1, status=500)
    whop_emulator.fail_next(1, status=429)
    whop_emulator.script(ScriptedResponse(fault=Fault.DROP))

    await client.notifications.create(**SEND, idempotency_key="secret-order-key")

    texts = list(otel.texts())
    assert len(otel.spans("POST")) == 4
    assert key_hash("secret-order-key") in texts  # the call is named, by a hash
    for secret in ("secret-order-key", str(whop_emulator.api_key)):
        assert not [text for text in texts if secret in text]


def test_credentials_in_a_url_are_redacted_as_the_conventions_ask() -> None:
    target = _target("https://user:hunter2@api.example.com:8443/api/v1/notifications")

    assert target.url_full == "https://REDACTED:REDACTED@api.example.com:8443/api/v1/notifications"
    assert (target.address, target.port) == ("api.example.com", 8443)
    assert _target("https://api.whop.com/api/v1/notifications").port == 443
