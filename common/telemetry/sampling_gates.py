"""Sampling decided at a process's edge, before OpenTelemetry's own instrumentation runs.

The maintained ASGI middleware and gRPC server interceptor do most of their work (span
attributes, a wrapped servicer context) whether or not the span is sampled, and the asyncpg
and Redis instrumentations cost tens of microseconds a call even under an unsampled parent.
So at 1% sampling nearly all of tracing's cost would be spent on requests that are dropped.
Here the sampler is asked first, on a trace id drawn here (and then given to the span through
PresetTraceIds, so the decision holds): a sampled request goes through the instrumentation as
usual; an unsampled one skips it and runs under a non-recording span of its trace id, which
its log lines and outgoing gRPC calls carry on (flagged unsampled), with the instrumentation
suppressed below a gRPC server."""

from __future__ import annotations

import os
from contextvars import ContextVar
from typing import Any

import grpc
from opentelemetry import context, trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext

from common.telemetry import trace_context
from common.telemetry.trace_roots import caller_span_context, first_decision

_IDS = RandomIdGenerator()


class SampleFirst(grpc.aio.ServerInterceptor):
    """Decides a call's sampling first, and holds OpenTelemetry's server interceptor (`traced`)
    for the calls it samples: a caller's traceparent decides when there is one, else the
    sampler, on a trace id drawn here and then given to the server span. An unsampled call
    never meets OpenTelemetry's interceptor (which builds a wrapped handler and a span per
    call, sampled or not: about 100 µs) and runs with the instrumentation suppressed (a query
    would otherwise still build its dropped span: 35 µs, a Redis command 38 µs), under a
    non-recording span of its trace so that its log lines keep the trace id. Its handler is
    the one beneath, untouched, so the service's own per-method wrappers stay cached.

    What is set here holds for the handler: grpc.aio runs a call's interceptors and then its
    handler in one task, whose context ends with the call. An outgoing gRPC call of an
    unsampled request (loyalty's rare GetJwks) carries no context, so auth decides its
    sampling afresh."""

    def __init__(
        self, traced: grpc.aio.ServerInterceptor | None = None, provider: Any = None
    ) -> None:
        self._traced = traced
        chosen: Any = provider or trace.get_tracer_provider()
        self._decides = first_decision(chosen.sampler)

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        if details.method.startswith(UNTRACED_PREFIX):
            return await continuation(details)
        span_context = _incoming(details.invocation_metadata)
        if span_context is None:
            trace_id = _IDS.generate_trace_id()
            if self._decides(trace_id):
                _preset_trace_id.set(trace_id)
                return await self._sampled(continuation, details)
            span_context = SpanContext(trace_id, _IDS.generate_span_id(), is_remote=False)
        elif span_context.trace_flags.sampled:
            return await self._sampled(continuation, details)
        quiet = context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True)
        context.attach(trace.set_span_in_context(NonRecordingSpan(span_context), quiet))
        return await continuation(details)

    async def _sampled(self, continuation: Any, details: Any) -> Any:
        if self._traced is None:
            return await continuation(details)
        return await self._traced.intercept_service(continuation, details)


# Health checks (load balancers, the gateway's /healthz, orchestration) are not requests.
UNTRACED_PREFIX = "/grpc.health."


def _incoming(metadata: Any) -> SpanContext | None:
    traceparent = tracestate = None
    for key, value in metadata or ():
        if key == "traceparent":
            traceparent = value
        elif key == "tracestate":
            tracestate = value
    return None if traceparent is None else caller_span_context(traceparent, tracestate)


def sample_first_in_servers(traced: grpc.aio.ServerInterceptor) -> None:
    """Every grpc.aio server made from now on gets SampleFirst, holding `traced`, as its first
    interceptor."""
    make_server = grpc.aio.server

    def server(*args: Any, **kwargs: Any) -> Any:
        kwargs["interceptors"] = [SampleFirst(traced), *(kwargs.get("interceptors") or ())]
        return make_server(*args, **kwargs)

    grpc.aio.server = server


class PresetTraceIds(RandomIdGenerator):
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
    excluded = os.environ.get("OTEL_PYTHON_ASGI_EXCLUDED_URLS", "/healthz,/livez,/readyz")
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
    chosen: Any = provider or trace.get_tracer_provider()
    decides = first_decision(chosen.sampler)

    async def gate(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or any(k == b"traceparent" for k, _ in scope["headers"]):
            await traced(scope, receive, send)
            return
        trace_id = _IDS.generate_trace_id()
        if decides(trace_id):
            token = _preset_trace_id.set(trace_id)
            try:
                await traced(scope, receive, send)
            finally:
                _preset_trace_id.reset(token)
            return
        unsampled = NonRecordingSpan(SpanContext(trace_id, _IDS.generate_span_id(), False))
        # attach/detach, not trace.use_span: a non-recording span has no status or exception
        # to record, and the context manager costs a generator a request.
        attached = context.attach(trace.set_span_in_context(unsampled))
        try:
            await app(scope, receive, send)
        finally:
            context.detach(attached)

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
