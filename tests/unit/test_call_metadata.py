"""A call's handler reads the metadata its own call brought, read once at the interceptor,
however many calls interleave in one server; outside an intercepted call, the context's."""

from __future__ import annotations

import asyncio

import grpc

from bench.ports import free_port
from common.rpc import call_metadata
from common.rpc.grpc_server import GrpcServer
from common.telemetry.metrics import rpc_metrics

CALLS = 100


class _Context:
    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-id", "from the context"),)


async def test_each_of_many_interleaved_calls_reads_its_own_metadata() -> None:
    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        # Kept at the interceptor: a context that would answer otherwise is not asked.
        before = dict(call_metadata.of(_Context()))["x-id"]
        await asyncio.sleep(0.01)  # every other call starts meanwhile
        after = dict(call_metadata.of(context))["x-id"]
        return f"{before} {after}".encode()

    server = GrpcServer(f"127.0.0.1:{free_port()}", ["test.Meta"], rpc_metrics("meta", None))
    server.server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Meta", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
            ),
        )
    )
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            call = channel.unary_unary("/test.Meta/Echo")
            answers = await asyncio.gather(
                *(call(b"", metadata=(("x-id", str(n)),)) for n in range(CALLS))
            )
    finally:
        await server.stop(0)
    assert [a.decode() for a in answers] == [f"{n} {n}" for n in range(CALLS)]


def test_outside_an_intercepted_call_the_context_answers() -> None:
    assert dict(call_metadata.of(_Context())) == {"x-id": "from the context"}
