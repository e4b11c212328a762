"""The stack's floors: servers that do only the part of a call no design on this stack can
skip, so that their CPU per call is the least a service built on it spends (bench.floors).

    python -m bench.floor_server ADDRESS statement DSN   grpc.aio, each call one statement
                                                         through the services' own pool
    python -m bench.floor_server ADDRESS refusal         grpc.aio behind the services'
                                                         interceptor, every call refused for
                                                         load (RESOURCE_EXHAUSTED, RetryInfo)
    python -m bench.floor_server ADDRESS http TARGET     uvicorn on httptools, each request
                                                         forwarded to the gRPC echo at TARGET
                                                         on the gateway's channels

Each runs on uvloop, as the services do."""

from __future__ import annotations

import itertools
import sys
import uuid
from typing import Any

import orjson
import uvicorn

from bench.echo_server import ECHO, serve
from common.processes import eventloop
from common.rpc.admission import AdmissionSettings
from common.rpc.channels import open_channels
from common.rpc.grpc_server import ServiceInterceptor
from common.storage import db
from common.telemetry.metrics import rpc_metrics


async def statement(address: str, dsn: str) -> None:
    pool = await db.create_pool(dsn, min_size=10, max_size=20)

    async def one_statement(request: bytes, context: object) -> bytes:
        await pool.fetchrow("SELECT $1::text AS echoed", "x")
        return request

    await serve(one_statement, address)


async def refusal(address: str) -> None:
    # The services' intake limit in gRPC's core is left out: its refusals are cheap, but they
    # are CANCELLED with no retry delay. What is measured is a refusal that carries one.
    settings = AdmissionSettings(domain="bench.floor", max_pending=0)
    interceptor = ServiceInterceptor(rpc_metrics("floor", None), None, settings, 0.0)
    assert interceptor.admission is not None
    interceptor.admission.limit = 0.0  # every call is past the limit

    async def never_reached(request: bytes, context: object) -> bytes:
        raise AssertionError("a refused call reached its handler")

    await serve(never_reached, address, [interceptor])


def http(address: str, target: str) -> None:
    calls: list[Any] = []
    turn = itertools.count()

    async def forward(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        if not calls:  # channels belong to the loop they are made on: the server's
            calls.extend(c.unary_unary(ECHO) for c in open_channels(target))
        headers = dict(scope["headers"])
        metadata = [
            ("x-request-id", uuid.uuid4().hex),
            ("authorization", headers.get(b"authorization", b"").decode("latin-1")),
            ("x-forwarded-for", scope["client"][0]),
        ]
        reply = await calls[next(turn) % len(calls)](body, metadata=metadata, timeout=5.0)
        out = orjson.dumps({"echoed": len(reply)})
        head = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(out))]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        await send({"type": "http.response.body", "body": out})

    host, _, port = address.rpartition(":")
    uvicorn.run(
        forward,
        host=host,
        port=int(port),
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


def main(argv: list[str]) -> None:
    address, mode, *rest = argv
    if mode == "statement":
        eventloop.run(statement(address, rest[0]))
    elif mode == "refusal":
        eventloop.run(refusal(address))
    elif mode == "http":
        http(address, rest[0])
    else:
        raise SystemExit(f"unknown floor {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
