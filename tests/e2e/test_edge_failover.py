"""The edge (HAProxy, common.processes.edge) of a replica whose workers are all dead, as edge#1
is while loyalty#1 restarts: its calls go to the other replica's workers, every one of them at
once, each with a worker's share. Had they gone to the first alone (HAProxy's default), half
the calls would wait in the edge's queue and be refused for load, though a worker was idle."""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc

from tests.e2e.stand_in import call, stand_in_edge

HOLD_S = 0.5  # each call holds its worker's share this long


async def test_a_dead_replicas_calls_take_every_backup_workers_share() -> None:
    served: Counter[str] = Counter()
    async with (
        stand_in_edge(in_flight=1, queue_timeout_ms=100, own_alive=False) as (address, paths),
        grpc.aio.insecure_channel(address) as channel,
    ):

        async def one() -> None:
            try:
                served[(await call(channel, HOLD_S)).socket] += 1
            except grpc.aio.AioRpcError as error:
                served[error.code().name] += 1

        await asyncio.gather(one(), one())
    # Both at once, one at each backup worker; with the first alone, the second would have
    # waited its 100 ms in the queue and been refused (RESOURCE_EXHAUSTED).
    assert served == Counter(paths)
