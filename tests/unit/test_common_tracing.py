"""Tracing's pure parts: configuration from OTEL_* variables, the sampler, and the trace
context helpers (logs, Sentry, outbox rows, AMQP headers, domain steps) on an in-memory
exporter. Nothing here installs a global tracer provider: the test process stays untraced."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision
from opentelemetry.trace import SpanContext, SpanKind, StatusCode, format_span_id, format_trace_id

from common.telemetry import sampling_gates, trace_context, trace_roots, tracing
from common.telemetry.sentry import before_send

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """trace_context on a tracer of its own, turned on, for this test only."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace_context, "_tracer", provider.get_tracer("test"))
    monkeypatch.setitem(trace_context._state, "enabled", True)
    yield exporter
    provider.shutdown()


def _ids(span: ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    assert context is not None
    return format_trace_id(context.trace_id), format_span_id(context.span_id)


def test_tracing_is_off_without_an_exporter() -> None:
    for env in ({}, {"OTEL_TRACES_EXPORTER": "none"}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}):
        assert tracing.exporter(env) is None
        assert tracing.setup("gateway", env) is False
    assert not trace_context.enabled()


def test_otlp_over_http_is_the_exporter_when_asked_for() -> None:
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    assert isinstance(tracing.exporter(env), OTLPSpanExporter)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "x"},
            "OTEL_TRACES_SAMPLER_ARG",
        ),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
            "OTEL_TRACES_SAMPLER_ARG",
        ),
    ],
)
def test_a_setting_tracing_cannot_honour_is_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(tracing.TracingConfigError, match=named):
        tracing.exporter(env)
        tracing.sampler(env)


def test_sampling_is_parent_based_whatever_the_rule() -> None:
    default = tracing.sampler({})
    assert default.get_description().startswith("ParentBased{root:NoOrphanClientSpans{AlwaysOn")
    ratio = tracing.sampler(
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}
    )
    assert "TraceIdRatioBased{0.01}" in ratio.get_description()
    assert ratio.get_description().startswith("ParentBased")


def test_a_client_span_never_starts_a_trace() -> None:
    sampler = trace_roots.NoOrphanClientSpans(ALWAYS_ON)
    assert sampler.should_sample(None, 1, "SELECT", SpanKind.CLIENT).decision == Decision.DROP
    server = sampler.should_sample(None, 1, "Apply", SpanKind.SERVER)
    assert server.decision == Decision.RECORD_AND_SAMPLE


def test_helpers_do_nothing_while_tracing_is_off() -> None:
    assert not trace_context.enabled()
    headers: dict[str, object] = {}
    with trace_context.publishing(headers, "exchange", "key", PARENT):
        assert trace_context.current_ids() is None
    assert headers == {}
    assert trace_context.current_traceparent() is None
    assert trace_context.add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}


def test_log_lines_and_sentry_events_carry_the_trace(spans: InMemorySpanExporter) -> None:
    with trace_context._tracer.start_as_current_span("request"):
        line = trace_context.add_trace_ids(None, "info", {"event": "rpc"})
        event = before_send({"message": "boom", "tags": {"a": "b"}}, None)
    trace_id, span_id = _ids(spans.get_finished_spans()[0])
    assert (line["trace_id"], line["span_id"]) == (trace_id, span_id)
    assert event["tags"] == {"a": "b", "trace_id": trace_id}
    assert event["contexts"]["otel"] == {"trace_id": trace_id, "span_id": span_id}


def test_an_outbox_row_takes_the_request_s_traceparent(spans: InMemorySpanExporter) -> None:
    assert trace_context.current_traceparent() is None  # no request: nothing to store
    with trace_context._tracer.start_as_current_span("request"):
        stored = trace_context.current_traceparent()
    trace_id, span_id = _ids(spans.get_finished_spans()[0])
    assert stored is not None and stored.startswith(f"00-{trace_id}-{span_id}-")
    assert int(stored[-2:], 16) & 1  # sampled: the relay's span is sampled too


def test_publish_and_consume_continue_the_stored_trace(spans: InMemorySpanExporter) -> None:
    headers: dict[str, object] = {"x-attempt": 1}
    with trace_context.publishing(headers, "loyalty.auth.events", "user.status_changed", PARENT):
        pass
    with trace_context.consuming(headers, "user_events"):
        pass
    publish, consume = spans.get_finished_spans()
    assert publish.kind == SpanKind.PRODUCER and consume.kind == SpanKind.CONSUMER
    assert publish.parent is not None and format_span_id(publish.parent.span_id) == (
        "00f067aa0ba902b7"
    )
    assert [format_span_id(link.context.span_id) for link in publish.links] == ["00f067aa0ba902b7"]
    assert _ids(publish)[0] == TRACE_ID and _ids(consume)[0] == TRACE_ID
    assert str(headers["traceparent"]).startswith(f"00-{TRACE_ID}-{_ids(publish)[1]}-")
    assert consume.parent is not None and consume.parent.span_id == publish.context.span_id
    assert [link.context.span_id for link in consume.links] == [publish.context.span_id]


def test_a_message_without_context_starts_its_own_trace(spans: InMemorySpanExporter) -> None:
    with trace_context.consuming({"x-attempt": 2, "traceparent": 7}, "user_events"):
        pass
    with trace_context.publishing({}, "exchange", "key", None):
        pass
    consume, publish = spans.get_finished_spans()
    assert consume.parent is None and consume.links == ()
    assert publish.parent is None and publish.links == ()


async def test_a_domain_step_is_a_span_and_a_rejection_is_no_error(
    spans: InMemorySpanExporter,
) -> None:
    @trace_context.domain_step("promo.eligibility")
    async def check(refuse: bool) -> str:
        if refuse:
            raise LookupError("PROMO_CODE_EXPIRED")
        return "ok"

    assert await check(False) == "ok"  # no request span: no step span either
    with trace_context._tracer.start_as_current_span("request"):
        assert await check(False) == "ok"
        with pytest.raises(LookupError):
            await check(True)
    done = [s for s in spans.get_finished_spans() if s.name != "request"]
    assert [s.name for s in done] == ["promo.eligibility", "promo.eligibility"]
    assert all(s.status.status_code == StatusCode.UNSET for s in done)
    assert all(s.events == () for s in done)


@dataclass
class Seen:
    intercepted_with_instrumentation: bool = False
    ran_with_instrumentation: bool = False
    span: SpanContext | None = None
    preset: int = 0
    traced: bool = False


async def _serve_one(ratio: str, traceparent: str | None) -> Seen:
    """One unary call through SampleFirst (the continuation stands for the interceptors
    after it); returns what the handler saw."""
    env = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": ratio}
    seen = Seen()

    async def behavior(request: object, context: object) -> str:
        seen.ran_with_instrumentation = is_instrumentation_enabled()
        seen.span = trace.get_current_span().get_span_context()
        seen.preset = sampling_gates._preset_trace_id.get()
        return "answer"

    handler = grpc.unary_unary_rpc_method_handler(behavior)

    async def continuation(details: object) -> object:
        seen.intercepted_with_instrumentation = is_instrumentation_enabled()
        return handler

    class Traced(grpc.aio.ServerInterceptor):
        """Stands for OpenTelemetry's interceptor: notes that it was asked."""

        async def intercept_service(self, inner: Any, details: Any) -> Any:
            seen.traced = True
            return await inner(details)

    metadata = (("traceparent", traceparent),) if traceparent else ()
    details = SimpleNamespace(method="/x.Svc/M", invocation_metadata=metadata)
    gate = sampling_gates.SampleFirst(Traced(), TracerProvider(sampler=tracing.sampler(env)))

    async def one_call() -> None:  # as grpc.aio runs it: interceptors, then handler, one task
        served = await gate.intercept_service(continuation, details)
        assert served is handler  # the service's own wrappers stay cached
        assert await served.unary_unary(None, None) == "answer"

    await asyncio.create_task(one_call())
    assert is_instrumentation_enabled() and sampling_gates._preset_trace_id.get() == 0
    return seen


async def test_an_unsampled_call_runs_with_instrumentation_suppressed() -> None:
    seen = await _serve_one("0.0", None)
    assert not seen.intercepted_with_instrumentation and not seen.ran_with_instrumentation
    assert seen.span is not None and seen.span.is_valid and not seen.span.trace_flags.sampled
    assert not seen.traced  # OpenTelemetry's interceptor is never asked
    unsampled_caller = PARENT.removesuffix("01") + "00"
    seen = await _serve_one("1.0", unsampled_caller)
    assert not seen.ran_with_instrumentation and not seen.traced
    assert seen.span is not None and format_trace_id(seen.span.trace_id) == TRACE_ID


async def test_a_sampled_call_is_traced_on_the_trace_id_it_was_sampled_on() -> None:
    seen = await _serve_one("1.0", None)
    assert seen.intercepted_with_instrumentation and seen.ran_with_instrumentation
    assert seen.traced
    assert seen.preset != 0  # the server span's trace id: the one the sampler said yes to
    seen = await _serve_one("0.0", PARENT)  # the caller's decision wins
    assert seen.ran_with_instrumentation and seen.preset == 0 and seen.traced


@pytest.mark.parametrize("ratio", ["0.0", "1.0"])
async def test_the_edge_samples_before_the_http_middleware(ratio: str) -> None:
    """Unsampled: the app runs without the middleware, under a non-recording span whose
    unsampled context the gRPC calls pass on. Sampled: the middleware's span gets the trace
    id the decision was made on. A caller's traceparent always goes to the middleware."""
    env = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": ratio}
    provider = TracerProvider(
        sampler=tracing.sampler(env), id_generator=sampling_gates.PresetTraceIds()
    )
    seen: list[tuple[str, object]] = []

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        seen.append(("app", trace.get_current_span().get_span_context()))

    async def traced(scope: dict[str, object], receive: object, send: object) -> None:
        # The preset id, twice (random ids would differ): the one the sampler was asked about.
        ids = {provider.id_generator.generate_trace_id() for _ in range(2)}
        seen.append(("traced", ids.pop() if len(ids) == 1 else 0))

    gate = sampling_gates._sampled_first(traced, app, provider)
    await gate({"type": "http", "headers": []}, None, None)
    await gate({"type": "http", "headers": [(b"traceparent", PARENT.encode())]}, None, None)
    (first, value), second = seen
    assert second[0] == "traced"
    if ratio == "0.0":
        assert first == "app" and isinstance(value, SpanContext)
        assert value.is_valid and not value.trace_flags.sampled
    else:
        assert first == "traced" and isinstance(value, int) and value != 0
        assert sampling_gates._preset_trace_id.get() == 0  # only for that request
