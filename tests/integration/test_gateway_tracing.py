"""The gateway's backend calls are traced only for sampled requests: a sampled request's call
has its CLIENT span and carries it to the backend as its traceparent; an unsampled one's call
takes channels without the interceptor (no sampler asked, no span made) and carries the
request's own context, flagged unsampled, so the backend drops it as the gateway did.

The tracer provider is this test's own (no global one is installed: the test process stays
untraced); the current span stands for what the HTTP edge (sampling_gates) decided."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import grpc
import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    TraceFlags,
    format_span_id,
    format_trace_id,
)

from common.telemetry import trace_context, tracing
from gateway.app import Gateway, create_app
from gateway.backends import Backends
from tests.fixtures.auth import AuthTestServer, TestUser
from tests.fixtures.gateway import gateway_settings
from tests.fixtures.loyalty import LoyaltyTestServer, loyalty_settings, start_loyalty, stop_loyalty
from tests.fixtures.samplers import CountingSampler

LIST_TARIFFS = "/loyalty.promo.v1.PromoService/ListTariffs"


@dataclass
class Traced:
    provider: TracerProvider
    sampler: CountingSampler
    spans: InMemorySpanExporter


@dataclass
class Recorder(grpc.aio.ServerInterceptor):
    """The trace headers each ListTariffs call arrives with."""

    seen: list[dict[str, str]] = field(default_factory=list)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if details.method == LIST_TARIFFS:
            names = ("traceparent", "tracestate")
            metadata = details.invocation_metadata or ()
            self.seen.append({k: v for k, v in metadata if k in names})
        return await continuation(details)


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> Iterator[Traced]:
    sampler = CountingSampler()
    provider = TracerProvider(sampler=sampler)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setitem(trace_context._state, "enabled", True)
    yield Traced(provider, sampler, exporter)
    provider.shutdown()


@pytest.fixture(scope="module")
async def recorded(
    auth_server: AuthTestServer,
) -> AsyncIterator[tuple[LoyaltyTestServer, Recorder]]:
    recorder = Recorder()
    server = await start_loyalty(loyalty_settings(auth_server.address), interceptors=[recorder])
    yield server, recorder
    await stop_loyalty(server)


@pytest.fixture
async def http(
    auth_server: AuthTestServer, recorded: tuple[LoyaltyTestServer, Recorder], traced: Traced
) -> AsyncIterator[httpx.AsyncClient]:
    settings = gateway_settings(auth_server.address, recorded[0].address)
    app = create_app(settings)
    gateway: Gateway = app.gateway
    interceptors = tracing.client_interceptors(traced.provider)
    gateway._backends = Backends(settings, gateway.routes, traced_interceptors=interceptors)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    client = httpx.AsyncClient(transport=transport, base_url="http://gateway")
    yield client
    await client.aclose()
    await gateway.backends.close()


async def list_tariffs(http: httpx.AsyncClient, auth_server: AuthTestServer) -> None:
    user: TestUser = auth_server.token_for()
    answer = await http.get("/v1/tariffs", headers={"Authorization": f"Bearer {user.access_token}"})
    assert answer.status_code == 200, answer.text


async def test_a_sampled_request_s_call_is_a_client_span_the_backend_continues(
    http: httpx.AsyncClient,
    auth_server: AuthTestServer,
    recorded: tuple[LoyaltyTestServer, Recorder],
    traced: Traced,
) -> None:
    recorder = recorded[1]
    with traced.provider.get_tracer("edge").start_as_current_span("http", kind=SpanKind.SERVER):
        await list_tariffs(http, auth_server)
    (client,) = [s for s in traced.spans.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert client.name == LIST_TARIFFS
    context = client.get_span_context()
    assert context is not None and context.trace_flags.sampled
    ids = f"{format_trace_id(context.trace_id)}-{format_span_id(context.span_id)}"
    assert recorder.seen[-1]["traceparent"] == f"00-{ids}-{context.trace_flags:02x}"


async def test_an_unsampled_request_s_call_makes_no_span_and_carries_its_context(
    http: httpx.AsyncClient,
    auth_server: AuthTestServer,
    recorded: tuple[LoyaltyTestServer, Recorder],
    traced: Traced,
) -> None:
    recorder = recorded[1]
    unsampled = SpanContext(
        0x4BF92F3577B34DA6A3CE929D0E0E4736,
        0x00F067AA0BA902B7,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.DEFAULT),
    )
    with trace.use_span(NonRecordingSpan(unsampled)):
        await list_tariffs(http, auth_server)
    assert traced.sampler.asked == 0
    assert traced.spans.get_finished_spans() == ()
    assert recorder.seen[-1] == {
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
    }


async def test_with_tracing_off_a_call_carries_no_trace_context(
    http: httpx.AsyncClient,
    auth_server: AuthTestServer,
    recorded: tuple[LoyaltyTestServer, Recorder],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(trace_context._state, "enabled", False)
    await list_tariffs(http, auth_server)
    assert recorded[1].seen[-1] == {}
