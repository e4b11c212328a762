"""gRPC channels to auth and loyalty, made once: each target may name several replicas,
balanced round robin; gRPC retries UNAVAILABLE only for calls that are safe to send twice."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.rpc.channels import EVERY_METHOD, open_channels
from common.telemetry import tracing
from gateway import trace_gate
from gateway.config import GatewaySettings
from gateway.routes import Route

Invoke = Callable[..., Any]


def idempotent_call(route: Route, request: Any) -> bool:
    """A call that may be sent twice: a read, or a write carrying its own idempotency key
    (a use of a code with a `request_id` returns the same purchase the second time)."""
    return route.idempotent or bool(getattr(request, "request_id", ""))


def _callables(channel: grpc.aio.Channel, routes: list[Route]) -> dict[str, Invoke]:
    return {
        r.full_method: (channel.unary_stream if r.streams else channel.unary_unary)(
            r.full_method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=r.output_type.FromString,
        )
        for r in routes
    }


def _by_backend(
    channels: dict[str, list[grpc.aio.Channel]], routes: list[Route]
) -> dict[str, list[dict[str, Invoke]]]:
    return {
        name: [_callables(c, [r for r in routes if r.backend == name]) for c in spread]
        for name, spread in channels.items()
    }


class Backends:
    def __init__(
        self,
        settings: GatewaySettings,
        routes: list[Route],
        traced_interceptors: Sequence[grpc.aio.ClientInterceptor] | None = None,
    ) -> None:
        """`traced_interceptors`: OpenTelemetry's client interceptors (by default those of
        common.telemetry.tracing, none while tracing is off), put on channels of their own
        that only calls of sampled requests take (gateway.trace_gate)."""
        targets = {"auth": settings.auth_grpc_addr, "loyalty": settings.loyalty_grpc_addr}
        # Per backend, two channels: one that never retries, one that retries every call; a
        # call takes the second only when it is idempotent (service config names methods, it
        # cannot look at a request's fields).
        # Each is a set of channels with connections of their own, taken in turn, so that the
        # calls spread over every worker of a backend (common.rpc.channels.CONNECTIONS_PER_TARGET).
        self.channels = {name: open_channels(t) for name, t in targets.items()}
        self.retrying = {name: open_channels(t, EVERY_METHOD) for name, t in targets.items()}
        self.timeout = settings.gateway_backend_timeout_seconds
        self.import_timeout = settings.gateway_import_timeout_seconds
        self._calls = _by_backend(self.channels, routes)
        self._retried_calls = _by_backend(self.retrying, routes)
        interceptors = (
            tracing.client_interceptors() if traced_interceptors is None else traced_interceptors
        )
        self._traced: list[list[grpc.aio.Channel]] = []
        self._traced_calls = self._calls
        self._traced_retried_calls = self._retried_calls
        if interceptors:
            traced = {
                name: open_channels(t, interceptors=interceptors) for name, t in targets.items()
            }
            retried = {
                name: open_channels(t, EVERY_METHOD, interceptors=interceptors)
                for name, t in targets.items()
            }
            self._traced = [*traced.values(), *retried.values()]
            self._traced_calls = _by_backend(traced, routes)
            self._traced_retried_calls = _by_backend(retried, routes)
        self._turn = itertools.count()

    def default_deadline(self, route: Route) -> float:
        """The deadline a call of `route` gets unless its client asks for less."""
        return self.import_timeout if route.raw_body else self.timeout

    async def call(
        self,
        route: Route,
        request: Any,
        metadata: list[tuple[str, str]],
        deadline_s: float | None = None,
    ) -> Any:
        propagated = trace_gate.unsampled_context()
        idempotent = idempotent_call(route, request)
        if propagated is None:
            calls = self._traced_retried_calls if idempotent else self._traced_calls
        else:
            calls = self._retried_calls if idempotent else self._calls
            metadata = [*metadata, *propagated] if propagated else metadata
        spread = calls[route.backend]
        return await spread[next(self._turn) % len(spread)][route.full_method](
            request,
            metadata=metadata,
            timeout=self.default_deadline(route) if deadline_s is None else deadline_s,
        )

    def stream(self, route: Route, request: Any, metadata: list[tuple[str, str]]) -> Any:
        """A server-streaming call. No deadline: an export lasts as long as the client reads,
        and ends when it goes away (the response cancels the call)."""
        propagated = trace_gate.unsampled_context()
        calls = self._traced_calls if propagated is None else self._calls
        metadata = [*metadata, *propagated] if propagated else metadata
        return calls[route.backend][0][route.full_method](request, metadata=metadata)

    async def health(self) -> dict[str, str]:
        report = {}
        for name, channels in self.channels.items():
            stub = health_pb2_grpc.HealthStub(channels[0])
            try:
                # Waits for a connection in backoff to be tried again, so that the answer is
                # about the backend now, not about the last failed attempt.
                answer = await stub.Check(
                    health_pb2.HealthCheckRequest(), timeout=1, wait_for_ready=True
                )
                report[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
            except grpc.aio.AioRpcError as error:
                report[name] = f"UNREACHABLE ({error.code().name})"
        return report

    async def close(self) -> None:
        for channels in [*self.channels.values(), *self.retrying.values(), *self._traced]:
            for channel in channels:
                await channel.close()
