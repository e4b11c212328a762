"""The edge (HAProxy, common.processes.edge, started as `make run` starts it) in front of
stand-in workers: grpc.aio servers on unix sockets behind the services' own interceptor
(common.rpc.grpc_server.ServiceInterceptor), with one method that holds its call as long as the
request asks and answers with the socket it was served on and the time the call had left."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from bench.ports import free_port
from common.processes import edge
from common.rpc import deadlines
from common.rpc.grpc_server import ServiceInterceptor
from common.telemetry.metrics import rpc_metrics
from tests.e2e.processes import ROOT, start, stop, wait_serving

METHOD = "/test.Slow/Call"


@dataclass(frozen=True)
class Answer:
    socket: str
    time_left: float | None


async def _worker(path: str) -> grpc.aio.Server:
    async def call(request: bytes, _: grpc.aio.ServicerContext) -> bytes:
        await asyncio.sleep(float(request.decode() or "0"))
        return f"{path} {deadlines.time_left()}".encode()

    server = grpc.aio.server(interceptors=[ServiceInterceptor(rpc_metrics("stand_in", None))])
    handler = grpc.unary_unary_rpc_method_handler(call)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("test.Slow", {"Call": handler})]
    )
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    server.add_insecure_port(f"unix:{path}")
    await server.start()
    return server


async def call(
    channel: grpc.aio.Channel,
    hold_s: float,
    deadline_s: float = 10,
    metadata: tuple[tuple[str, str], ...] = (),
) -> Answer:
    """One call that holds its worker `hold_s` seconds, with a deadline `deadline_s` away."""
    answer = await channel.unary_unary(METHOD)(
        str(hold_s).encode(), timeout=deadline_s, metadata=metadata
    )
    socket, left = answer.decode().split(" ")
    return Answer(socket, None if left == "None" else float(left))


@asynccontextmanager
async def stand_in_edge(
    in_flight: int, queue_timeout_ms: int, own_alive: bool = True
) -> AsyncIterator[tuple[str, Sequence[str]]]:
    """An edge with two workers of its own, live (`own_alive`) or gone with two live workers
    of another replica as its backups; `in_flight` calls at each, up to 1,000 waiting
    `queue_timeout_ms` in its queue. Yields its address and the live workers' sockets."""
    with tempfile.TemporaryDirectory(prefix="edge-stand-in-") as folder:
        alive = os.path.join(folder, "alive-")
        paths = [edge.socket_path(alive, i) for i in range(2)]
        workers = [await _worker(path) for path in paths]
        address = f"127.0.0.1:{free_port()}"
        settings = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            edge.SERVICE_WORKERS: "2",
            "EDGE_IN_FLIGHT": str(in_flight),  # at each worker
            "EDGE_QUEUED": "1000",
            "EDGE_QUEUE_TIMEOUT_MS": str(queue_timeout_ms),
        }
        own = alive if own_alive else os.path.join(folder, "gone-")
        # The edge's environment as `make run` makes it (no direct address: no service here).
        _, env = edge.environments(settings, address, "", own, [] if own_alive else [alive])
        proxy = start("common.processes.edge", env)
        try:
            # Blocking: in a thread, as the workers answering its probes run on this loop.
            await asyncio.to_thread(wait_serving, address, proxy)
            yield address, paths
        finally:
            assert stop(proxy) == 0
            for worker in workers:
                await worker.stop(None)
