"""gRPC channels to auth and loyalty, made once: each target may name several replicas,
balanced round robin; gRPC retries UNAVAILABLE only for calls that are safe to send twice."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.rpc.channels import EVERY_METHOD, open_channels
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
    def __init__(self, settings: GatewaySettings, routes: list[Route]) -> None:
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
        self._turn = itertools.count()

    async def call(self, route: Route, request: Any, metadata: list[tuple[str, str]]) -> Any:
        calls = self._retried_calls if idempotent_call(route, request) else self._calls
        timeout = self.import_timeout if route.raw_body else self.timeout
        spread = calls[route.backend]
        return await spread[next(self._turn) % len(spread)][route.full_method](
            request, metadata=metadata, timeout=timeout
        )

    def stream(self, route: Route, request: Any, metadata: list[tuple[str, str]]) -> Any:
        """A server-streaming call. No deadline: an export lasts as long as the client reads,
        and ends when it goes away (the response cancels the call)."""
        return self._calls[route.backend][0][route.full_method](request, metadata=metadata)

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
        for channels in [*self.channels.values(), *self.retrying.values()]:
            for channel in channels:
                await channel.close()
