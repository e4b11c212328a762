"""The ceiling: a bare grpc.aio unary echo server (`python -m bench.echo_server ADDRESS`)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any

import grpc

# The one method of every benchmark server (this one and bench.floor_server's).
ECHO = "/bench.Echo/Echo"


async def serve(
    handler: Any, address: str, interceptors: Sequence[grpc.aio.ServerInterceptor] = ()
) -> None:
    """Serves `handler` as bench.Echo/Echo on `address` until the process ends."""
    service, _, method = ECHO.strip("/").partition("/")
    server = grpc.aio.server(interceptors=interceptors)
    methods = {method: grpc.unary_unary_rpc_method_handler(handler)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, methods),))
    server.add_insecure_port(address)
    await server.start()
    await server.wait_for_termination()


async def _echo(request: bytes, context: object) -> bytes:
    return request


if __name__ == "__main__":
    asyncio.run(serve(_echo, sys.argv[1]))
