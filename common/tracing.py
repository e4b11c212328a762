"""OpenTelemetry tracing, set up from the standard OTEL_* environment variables.

Off unless OTEL_TRACES_EXPORTER says `otlp` (OTLP over HTTP/protobuf to
OTEL_EXPORTER_OTLP_ENDPOINT) or `console`: while off no tracer provider is installed and no
library is instrumented, so nothing runs per request. When on, the maintained
instrumentations trace the gRPC servers and clients (grpc.aio), asyncpg, Redis and the
gateway's ASGI app; common.trace_context carries the context through the outbox and RabbitMQ.

Sampling is always parent-based, so a request sampled where it enters is sampled in every
process it reaches: OTEL_TRACES_SAMPLER picks the rule for a trace's first span
(`parentbased_always_on`, the default; `parentbased_traceidratio` with OTEL_TRACES_SAMPLER_ARG;
`parentbased_always_off`; the plain names mean the same). A query or call with no parent (a
background loop polling its table) never starts a trace of its own."""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.propagate import extract
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from common import trace_context

# What an operator sets (docs/operations.md); the SDK reads the other OTEL_* variables itself.
VARIABLES = (
    "OTEL_SERVICE_NAME",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_BSP_SCHEDULE_DELAY",
)
EXPORTERS = ("otlp", "console")
PROTOCOLS = ("http/protobuf",)


class TracingConfigError(SystemExit):
    """An OTEL_* variable this build cannot honour; the message names it."""


class NoOrphanClientSpans(Sampler):
    """Drops a CLIENT span that would start a trace (a query of an idle relay, a sweeper's
    batch): only requests and messages start traces. Everything else goes to `root`."""

    def __init__(self, root: Sampler) -> None:
        self._root = root

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if kind == SpanKind.CLIENT:
            return SamplingResult(Decision.DROP)
        return self._root.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"NoOrphanClientSpans{{{self._root.get_description()}}}"


def _ratio(env: dict[str, str]) -> float:
    raw = env.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
    try:
        ratio = float(raw)
    except ValueError:
        raise TracingConfigError(f"OTEL_TRACES_SAMPLER_ARG={raw!r}: not a number") from None
    if not 0.0 <= ratio <= 1.0:
        raise TracingConfigError(f"OTEL_TRACES_SAMPLER_ARG={raw!r}: must be within 0..1")
    return ratio


def sampler(env: dict[str, str]) -> Sampler:
    """The parent-based sampler OTEL_TRACES_SAMPLER(_ARG) describe."""
    name = env.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").lower()
    rule = name.removeprefix("parentbased_")
    roots: dict[str, Any] = {
        "always_on": lambda: ALWAYS_ON,
        "always_off": lambda: ALWAYS_OFF,
        "traceidratio": lambda: TraceIdRatioBased(_ratio(env)),
    }
    if rule not in roots:
        raise TracingConfigError(
            f"OTEL_TRACES_SAMPLER={name!r}: use parentbased_always_on, parentbased_always_off"
            " or parentbased_traceidratio"
        )
    return ParentBased(NoOrphanClientSpans(roots[rule]()))


def exporter(env: dict[str, str]) -> SpanExporter | None:
    """The exporter OTEL_TRACES_EXPORTER names; None when tracing is off."""
    name = env.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    if name in ("", "none"):
        return None
    if name not in EXPORTERS:
        raise TracingConfigError(f"OTEL_TRACES_EXPORTER={name!r}: use otlp, console or none")
    if name == "console":
        return ConsoleSpanExporter()
    protocol = env.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", env.get("OTEL_EXPORTER_OTLP_PROTOCOL", PROTOCOLS[0])
    )
    if protocol not in PROTOCOLS:
        raise TracingConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: this build sends http/protobuf"
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers and timeout from OTEL_EXPORTER_OTLP_*


def setup(default_name: str, env: dict[str, str] | None = None) -> bool:
    """Turns tracing on when the environment asks for it; returns whether it did. Called once
    per process, before any server, channel or pool is made (the gRPC instrumentations patch
    the constructors)."""
    env = dict(os.environ) if env is None else env
    span_exporter = exporter(env)
    if span_exporter is None:
        return False
    name = env.get("OTEL_SERVICE_NAME") or default_name
    provider = TracerProvider(
        sampler=sampler(env),
        resource=Resource.create({SERVICE_NAME: name}),
        id_generator=_PresetTraceIds(),
    )
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(provider)
    _instrument()
    trace_context.enable()
    return True


def _instrument() -> None:
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.grpc import (
        GrpcAioInstrumentorClient,
        GrpcAioInstrumentorServer,
    )
    from opentelemetry.instrumentation.grpc.filters import health_check, negate
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    # Wrapped before the instrumentation wraps it: SampleFirst goes first, before its interceptor.
    _sample_first_in_servers()
    # Health checks (load balancers, the gateway's /healthz, orchestration) are not requests.
    GrpcAioInstrumentorServer(filter_=negate(health_check())).instrument()
    GrpcAioInstrumentorClient(filter_=negate(health_check())).instrument()
    AsyncPGInstrumentor().instrument()
    RedisInstrumentor().instrument()


class SampleFirst(grpc.aio.ServerInterceptor):
    """Decides a call's sampling before OpenTelemetry's server interceptor (it sits first):
    a caller's traceparent decides when there is one, else the sampler, on a trace id drawn
    here and then given to the server span. An unsampled unary call runs with the
    instrumentation suppressed, under a non-recording span of its trace (log lines keep
    the trace id): the interceptor and every query and Redis command would otherwise still
    build their dropped spans (measured: about 100 µs a call for the interceptor, 35 µs a
    query, 38 µs a Redis command), most of what tracing at 1% would cost. An outgoing gRPC
    call of such a request (loyalty's rare GetJwks) carries no context, so auth decides its
    sampling afresh."""

    def __init__(self, provider: Any = None) -> None:
        self._provider = provider
        self._ids = RandomIdGenerator()

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        incoming = _incoming(details.invocation_metadata)
        preset = 0
        if incoming is not None:
            sampled = incoming.trace_flags.sampled
        else:
            preset = self._ids.generate_trace_id()
            provider: Any = self._provider or trace.get_tracer_provider()
            decision = provider.sampler.should_sample(None, preset, "rpc", SpanKind.SERVER)
            sampled = decision.decision.is_sampled()
        if sampled:
            handler = await continuation(details)
            return _unary_wrapped(handler, lambda b: _with_preset(b, preset)) if preset else handler
        with suppress_instrumentation():
            handler = await continuation(details)
        span_context = incoming or SpanContext(
            preset, self._ids.generate_span_id(), is_remote=False
        )
        return _unary_wrapped(handler, lambda b: _quietly(b, NonRecordingSpan(span_context)))


def _incoming(metadata: Any) -> SpanContext | None:
    carrier = {k: v for k, v in metadata or () if k in ("traceparent", "tracestate")}
    if "traceparent" not in carrier:
        return None
    span_context = trace.get_current_span(extract(carrier)).get_span_context()
    return span_context if span_context.is_valid else None


def _unary_wrapped(handler: Any, wrap: Any) -> Any:
    if handler is None or handler.request_streaming or handler.response_streaming:
        return handler
    return handler._replace(unary_unary=wrap(handler.unary_unary))


def _with_preset(behavior: Any, trace_id: int) -> Any:
    async def sampled(request: Any, context: Any) -> Any:
        token = _preset_trace_id.set(trace_id)
        try:
            return await behavior(request, context)
        finally:
            _preset_trace_id.reset(token)

    return sampled


def _quietly(behavior: Any, span: NonRecordingSpan) -> Any:
    async def unsampled(request: Any, context: Any) -> Any:
        with trace.use_span(span), suppress_instrumentation():
            return await behavior(request, context)

    return unsampled


def _sample_first_in_servers() -> None:
    make_server = grpc.aio.server

    def server(*args: Any, **kwargs: Any) -> Any:
        kwargs["interceptors"] = [SampleFirst(), *(kwargs.get("interceptors") or ())]
        return make_server(*args, **kwargs)

    grpc.aio.server = server


class _PresetTraceIds(RandomIdGenerator):
    """Random ids, but the trace id the edge already drew (and sampled on) when it has one."""

    def generate_trace_id(self) -> int:
        return _preset_trace_id.get() or super().generate_trace_id()


_preset_trace_id: ContextVar[int] = ContextVar("preset_trace_id", default=0)


def asgi(app: Any) -> Any:
    """The gateway's app inside OpenTelemetry's ASGI middleware when tracing is on: the HTTP
    span is the parent of everything the request does, the request's log line included."""
    if not trace_context.enabled():
        return app
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    # The per-chunk send/receive spans say little and double the span count.
    excluded = os.environ.get("OTEL_PYTHON_ASGI_EXCLUDED_URLS", "/healthz")
    traced = OpenTelemetryMiddleware(
        _named_by_route(app), excluded_urls=excluded, exclude_spans=["receive", "send"]
    )
    return _sampled_first(traced, app)


def _sampled_first(traced: Any, app: Any, provider: Any = None) -> Any:
    """Draws a new request's trace id and asks the sampler before the ASGI middleware runs:
    the middleware gathers its span's attributes whether or not the span is sampled (about
    100 µs a request), so an unsampled request skips it and runs under a non-recording span
    of that trace id instead, which the gRPC calls still propagate (flagged unsampled, so
    every process drops them alike). A request that brings a traceparent goes through the
    middleware, which follows the caller's decision."""
    provider = provider or trace.get_tracer_provider()
    ids = RandomIdGenerator()

    async def gate(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or any(k == b"traceparent" for k, _ in scope["headers"]):
            await traced(scope, receive, send)
            return
        trace_id = ids.generate_trace_id()
        decision = provider.sampler.should_sample(None, trace_id, "http", SpanKind.SERVER)
        if decision.decision.is_sampled():
            token = _preset_trace_id.set(trace_id)
            try:
                await traced(scope, receive, send)
            finally:
                _preset_trace_id.reset(token)
            return
        unsampled = SpanContext(trace_id, ids.generate_span_id(), is_remote=False)
        with trace.use_span(NonRecordingSpan(unsampled)):
            await app(scope, receive, send)

    return gate


def _named_by_route(app: Any) -> Any:
    """Names the HTTP span after the route the gateway matched (`POST /v1/promocodes/apply`,
    left in scope["route_template"]) rather than its catch-all pattern, once it is known."""

    async def named(scope: dict[str, Any], receive: Any, send: Any) -> None:
        span = trace.get_current_span()

        async def renaming_send(message: dict[str, Any]) -> None:
            # Before the response starts: the span ends with the response's last chunk.
            if message["type"] == "http.response.start" and scope.get("route_template"):
                span.update_name(scope["route_template"])
            await send(message)

        await app(scope, receive, renaming_send)

    return named
