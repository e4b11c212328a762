"""A stopping server stays NOT_SERVING through its drain, whatever else reports health; both
servers answer the standard health service for "" and for each of their service names."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.rpc.grpc_server import GrpcServer
from common.telemetry.metrics import rpc_metrics
from tests.fixtures.auth import AuthTestServer
from tests.fixtures.loyalty import LoyaltyTestServer

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_nothing_turns_a_draining_server_back_to_serving() -> None:
    release, entered = asyncio.Event(), asyncio.Event()

    async def slow(request: bytes, context: object) -> bytes:
        entered.set()
        await release.wait()
        return request

    server = GrpcServer("127.0.0.1:0", ["probe.Probe"], rpc_metrics("probe", registry=None))
    handler = grpc.method_handlers_generic_handler(
        "probe.Probe", {"Slow": grpc.unary_unary_rpc_method_handler(slow)}
    )
    server.server.add_generic_rpc_handlers((handler,))
    port = await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == SERVING
        in_flight = channel.unary_unary("/probe.Probe/Slow")(b"ping")
        await asyncio.wait_for(entered.wait(), 10)
        stopping = asyncio.create_task(server.stop(30))
        assert (await asyncio.wait_for(watch.read(), 10)).status == NOT_SERVING
        await server.set_serving(True)  # as the broker-health loop would on a reconnect
        # Asked in-process: a stopping server takes no new calls, not even health checks.
        answer = await server.health.Check(health_pb2.HealthCheckRequest(), None)
        assert answer.status == NOT_SERVING
        watch.cancel()  # an open watch is itself a call in flight
        release.set()
        assert await in_flight == b"ping"  # the call in flight finished within the grace
        await stopping


@pytest.mark.parametrize(
    "service",
    ["", "loyalty.promo.v1.PromoService", "loyalty.promo.v1.PromoAdminService"],
)
async def test_loyalty_answers_health_for_each_of_its_services(
    loyalty_server: LoyaltyTestServer, service: str
) -> None:
    stub = health_pb2_grpc.HealthStub(loyalty_server.channel)
    answer = await stub.Check(health_pb2.HealthCheckRequest(service=service))
    assert answer.status == SERVING


@pytest.mark.parametrize(
    "service", ["", "loyalty.auth.v1.AuthService", "loyalty.auth.v1.UserAdminService"]
)
async def test_auth_answers_health_for_each_of_its_services(
    auth_server: AuthTestServer, service: str
) -> None:
    stub = health_pb2_grpc.HealthStub(auth_server.channel)
    answer = await stub.Check(health_pb2.HealthCheckRequest(service=service))
    assert answer.status == SERVING


async def test_an_unknown_service_name_is_not_found(loyalty_server: LoyaltyTestServer) -> None:
    stub = health_pb2_grpc.HealthStub(loyalty_server.channel)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
