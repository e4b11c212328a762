"""gRPC channels to auth and loyalty, made once, with retries for idempotent reads only."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.config import GatewaySettings
from gateway.routes import Route

Invoke = Callable[..., Any]


def service_config(routes: list[Route]) -> str:
    """gRPC's own retry policy, applied to the idempotent (GET) methods only."""
    reads = [
        {"service": r.method.containing_service.full_name, "method": r.method.name}
        for r in routes
        if r.idempotent
    ]
    policy = {
        "maxAttempts": 3,
        "initialBackoff": "0.05s",
        "maxBackoff": "0.5s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    return json.dumps({"methodConfig": [{"name": reads, "retryPolicy": policy}]})


class Backends:
    def __init__(self, settings: GatewaySettings, routes: list[Route]) -> None:
        options = [("grpc.service_config", service_config(routes)), ("grpc.enable_retries", 1)]
        self.channels = {
            "auth": grpc.aio.insecure_channel(settings.auth_grpc_addr, options=options),
            "loyalty": grpc.aio.insecure_channel(settings.loyalty_grpc_addr, options=options),
        }
        self.timeout = settings.gateway_backend_timeout_seconds
        self.import_timeout = settings.gateway_import_timeout_seconds
        self._calls: dict[str, Invoke] = {r.full_method: self._callable(r) for r in routes}

    def _callable(self, route: Route) -> Invoke:
        channel = self.channels[route.backend]
        kind = channel.unary_stream if route.streams else channel.unary_unary
        invoke: Invoke = kind(
            route.full_method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=route.output_type.FromString,
        )
        return invoke

    async def call(self, route: Route, request: Any, metadata: list[tuple[str, str]]) -> Any:
        timeout = self.import_timeout if route.raw_body else self.timeout
        return await self._calls[route.full_method](request, metadata=metadata, timeout=timeout)

    def stream(self, route: Route, request: Any, metadata: list[tuple[str, str]]) -> Any:
        """A server-streaming call. No deadline: an export lasts as long as the client reads,
        and ends when it goes away (the response cancels the call)."""
        return self._calls[route.full_method](request, metadata=metadata)

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
        for channel in self.channels.values():
            await channel.close()
