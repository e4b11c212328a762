"""The edge (HAProxy, common.processes.edge) of a replica whose workers are all dead, as edge#1
is while loyalty#1 restarts: its calls go to the other replica's workers, every one of them at
once, each with a worker's share. Had they gone to the first alone (HAProxy's default), half
the calls would wait in the edge's queue and be refused for load, though a worker was idle."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health, health_pb2_grpc

from bench.ports import free_port
from common.processes import edge
from tests.e2e.processes import ROOT, start, stop, wait_serving

SLOW_S = 0.5  # each call holds its worker's share this long
METHOD = "/test.Slow/Call"


async def _worker(path: str) -> grpc.aio.Server:
    """A stand-in for a loyalty worker on its unix socket: health, and one slow method that
    answers with the socket it was served on."""

    async def call(_: bytes, __: grpc.aio.ServicerContext) -> bytes:
        await asyncio.sleep(SLOW_S)
        return path.encode()

    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(call)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("test.Slow", {"Call": handler})]
    )
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    server.add_insecure_port(f"unix:{path}")
    await server.start()
    return server


@pytest.fixture
async def stranded() -> AsyncIterator[tuple[str, list[str]]]:
    """An edge whose own two workers are gone, with two live workers of another replica as
    its backups; one call in flight at each, up to 1,000 waiting 100 ms in its queue."""
    with tempfile.TemporaryDirectory(prefix="edge-failover-") as folder:
        backups = os.path.join(folder, "alive-")
        paths = [edge.socket_path(backups, i) for i in range(2)]
        workers = [await _worker(path) for path in paths]
        address = f"127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "EDGE_ADDR": address,
            "EDGE_SOCKETS": os.path.join(folder, "gone-"),
            "EDGE_WORKERS": "2",
            "EDGE_IN_FLIGHT": "1",  # at each worker
            "EDGE_QUEUED": "1000",
            "EDGE_QUEUE_TIMEOUT_MS": "100",
            "EDGE_BACKUP_SOCKETS": backups,
        }
        proxy = start("common.processes.edge", env)
        try:
            # Blocking: in a thread, as the workers answering its probes run on this loop.
            await asyncio.to_thread(wait_serving, address, proxy)
            yield address, paths
        finally:
            assert stop(proxy) == 0
            for worker in workers:
                await worker.stop(None)


async def test_a_dead_replicas_calls_take_every_backup_workers_share(
    stranded: tuple[str, list[str]],
) -> None:
    address, paths = stranded
    served: Counter[str] = Counter()
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(METHOD)

        async def one() -> None:
            try:
                served[(await call(b"", timeout=10)).decode()] += 1
            except grpc.aio.AioRpcError as error:
                served[error.code().name] += 1

        await asyncio.gather(one(), one())
    # Both at once, one at each backup worker; with the first alone, the second would have
    # waited its 100 ms in the queue and been refused (RESOURCE_EXHAUSTED).
    assert served == Counter(paths)
