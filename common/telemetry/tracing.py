"""OpenTelemetry tracing, set up from the standard OTEL_* environment variables.

Off unless OTEL_TRACES_EXPORTER says `otlp` (OTLP over HTTP/protobuf to
OTEL_EXPORTER_OTLP_ENDPOINT) or `console`: while off no tracer provider is installed and no
library is instrumented, so nothing runs per request. When on, the maintained
instrumentations trace the gRPC servers and clients (grpc.aio), asyncpg, Redis and the
gateway's ASGI app; common.telemetry.trace_context carries the context through the outbox and
RabbitMQ.

Sampling is always parent-based, so a request sampled where it enters is sampled in every
process it reaches: OTEL_TRACES_SAMPLER picks the rule for a trace's first span
(`parentbased_always_on`, the default; `parentbased_traceidratio` with OTEL_TRACES_SAMPLER_ARG;
`parentbased_always_off`; the plain names mean the same). A query or call with no parent (a
background loop polling its table) never starts a trace of its own."""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

from common.telemetry import trace_context
from common.telemetry.sampling_gates import PresetTraceIds, sample_first_in_servers
from common.telemetry.sampling_gates import asgi as asgi  # the gateway's hook, beside setup
from common.telemetry.trace_roots import NoOrphanClientSpans

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


def setup(
    default_name: str, env: dict[str, str] | None = None, *, instrument_clients: bool = True
) -> bool:
    """Turns tracing on when the environment asks for it; returns whether it did. Called once
    per process, before any server, channel or pool is made (the gRPC instrumentations patch
    the constructors). `instrument_clients=False` leaves gRPC client channels alone: the
    gateway puts `client_interceptors()` on channels of their own, taken only by calls of
    sampled requests."""
    env = dict(os.environ) if env is None else env
    span_exporter = exporter(env)
    if span_exporter is None:
        return False
    name = env.get("OTEL_SERVICE_NAME") or default_name
    provider = TracerProvider(
        sampler=sampler(env),
        resource=Resource.create({SERVICE_NAME: name}),
        id_generator=PresetTraceIds(),
    )
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(provider)
    _instrument(instrument_clients)
    trace_context.enable()
    return True


def client_interceptors(provider: Any = None) -> list[Any]:
    """OpenTelemetry's gRPC client interceptors (health checks left out) while tracing is on,
    for channels that only sampled calls take; none while it is off. grpc.aio runs every call
    on a channel with interceptors through its intercepted-call machinery, whether or not
    the interceptor then skips its span: at 1% sampling that is paid 99 times for nothing."""
    if not trace_context.enabled():
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors
    from opentelemetry.instrumentation.grpc.filters import health_check, negate

    interceptors: list[Any] = aio_client_interceptors(
        tracer_provider=provider, filter_=negate(health_check())
    )
    return interceptors


def _instrument(clients: bool) -> None:
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, aio_server_interceptor
    from opentelemetry.instrumentation.grpc.filters import health_check, negate
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    # OpenTelemetry's server interceptor runs inside SampleFirst, for sampled calls only.
    sample_first_in_servers(aio_server_interceptor(filter_=negate(health_check())))
    if clients:
        # Health checks (load balancers, the gateway's /healthz, orchestration) are not requests.
        GrpcAioInstrumentorClient(filter_=negate(health_check())).instrument()
    AsyncPGInstrumentor().instrument()
    RedisInstrumentor().instrument()
