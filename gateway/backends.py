"""gRPC channels to auth and loyalty, made once: each target may name several replicas,
balanced round robin; gRPC retries UNAVAILABLE only for calls that are safe to send twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.channels import EVERY_METHOD, open_channel
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


class Backends:
    def __init__(self, settings: GatewaySettings, routes: list[Route]) -> None:
        targets = {"auth": settings.auth_grpc_addr, "loyalty": settings.loyalty_grpc_addr}
        # Per backend, two channels: one that never retries, one that retries every call; a
        # call takes the second only when it is idempotent (service config names methods, it
        # cannot look at a request's fields).
        self.channels = {name: open_channel(t) for name, t in targets.items()}
        self.retrying = {name: open_channel(t, EVERY_METHOD) for name, t in targets.items()}
        self.timeout = settings.gateway_backend_timeout_seconds
        self.import_timeout = settings.gateway_import_timeout_seconds
        self._calls = {
            name: _callables(self.channels[name], [r for r in routes if r.backend == name])
            for name in targets
        }
        self._retried_calls = {
            name: _callables(self.retrying[name], [r for r in routes if r.backend == name])
            for name in targets
        }

    async def call(self, route: Route, request: Any, metadata: list[tuple[str, str]]) -> Any:
        calls = self._retried_calls if idempotent_call(route, request) else self._calls
        timeout = self.import_timeout if route.raw_body else self.timeout
        return await calls[route.backend][route.full_method](
            request, metadata=metadata, timeout=timeout
        )

    def stream(self, route: Route, request: Any, metadata: list[tuple[str, str]]) -> Any:
        """A server-streaming call. No deadline: an export lasts as long as the client reads,
        and ends when it goes away (the response cancels the call)."""
        return self._calls[route.backend][route.full_method](request, metadata=metadata)

    async def health(self) -> dict[str, str]:
        report = {}
        for name, channel in self.channels.items():
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                report[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
            except grpc.aio.AioRpcError as error:
                report[name] = f"UNREACHABLE ({error.code().name})"
        return report

    async def close(self) -> None:
        for channel in [*self.channels.values(), *self.retrying.values()]:
            await channel.close()
