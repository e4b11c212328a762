"""The ceiling: a bare grpc.aio unary echo server (`python -m bench.echo_server ADDRESS`)."""

from __future__ import annotations

import asyncio
import sys

import grpc


async def _echo(request: bytes, context: object) -> bytes:
    return request


async def main(address: str) -> None:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(address)
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
