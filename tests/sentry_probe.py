"""Run as a process by the Sentry test: a gRPC server with Sentry on, whose handler fails with
secrets in its message and in the caller's metadata; the event goes to the given DSN."""

from __future__ import annotations

import asyncio
import sys

import grpc
import sentry_sdk

from common.rpc.grpc_server import GrpcServer
from common.telemetry import logs, sentry
from common.telemetry.metrics import rpc_metrics
from protogen.loyalty.auth.v1 import auth_pb2

SECRETS = {
    "email": "ann.secret@example.com",
    "password": "hunter2-password",
    "token": "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
}


async def _fail(request: bytes, context: object) -> bytes:
    login = auth_pb2.LoginRequest.FromString(request)
    password = login.password  # in a local and in the request: neither may travel
    assert password
    raise RuntimeError(f"login for {login.email} failed, token {SECRETS['token']}")


async def main(dsn: str) -> None:
    logs.configure("probe")
    sentry.init(dsn, "probe")
    server = GrpcServer("127.0.0.1:0", ["probe.Probe"], rpc_metrics("probe", registry=None))
    handler = grpc.method_handlers_generic_handler(
        "probe.Probe", {"Fail": grpc.unary_unary_rpc_method_handler(_fail)}
    )
    server.server.add_generic_rpc_handlers((handler,))
    port = await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/probe.Probe/Fail")
        try:
            login = auth_pb2.LoginRequest(email=SECRETS["email"], password=SECRETS["password"])
            metadata = (("authorization", f"Bearer {SECRETS['token']}"),)
            await call(login.SerializeToString(), metadata=metadata)
        except grpc.aio.AioRpcError as error:
            print(error.code().name)
    await server.stop(0)
    sentry_sdk.flush(5)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
