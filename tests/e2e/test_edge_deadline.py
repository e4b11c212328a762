"""A call's wait in the edge's queue counts against its deadline: gRPC starts a call's clock
where the call reaches the worker, after the wait, so the edge stamps when it took the call
and the service takes the wait off (common.rpc.deadlines). Storage then stops at the caller's
real deadline, not at one the queue pushed back."""

from __future__ import annotations

import asyncio

import grpc

from common.rpc import deadlines
from tests.e2e.stand_in import call, stand_in_edge

DEADLINE_S = 3.0
HOLD_S = 0.6  # the calls ahead hold both workers this long


async def test_a_callers_own_stamp_is_replaced_by_the_edges() -> None:
    # A caller that claims the edge took its call long ago (to shorten the time of calls it
    # does not own, or to see what breaks) is stamped anew: it keeps its whole deadline.
    forged = ((deadlines.RECEIVED_HEADER, "1"),)
    async with (
        stand_in_edge(in_flight=1, queue_timeout_ms=100) as (address, _),
        grpc.aio.insecure_channel(address) as channel,
    ):
        answer = await call(channel, 0, deadline_s=DEADLINE_S, metadata=forged)
    assert answer.time_left is not None
    assert DEADLINE_S - 0.2 < answer.time_left < DEADLINE_S + 0.05


async def test_a_call_that_waited_in_the_queue_has_that_much_less_time() -> None:
    async with (
        stand_in_edge(in_flight=1, queue_timeout_ms=1000) as (address, _),
        grpc.aio.insecure_channel(address) as channel,
    ):
        ahead = [asyncio.create_task(call(channel, HOLD_S)) for _ in range(2)]
        await asyncio.sleep(0.05)  # both workers busy: the next call waits its turn
        waited = await call(channel, 0, deadline_s=DEADLINE_S)
        await asyncio.gather(*ahead)
        fresh = await call(channel, 0, deadline_s=DEADLINE_S)
    # gRPC rounds the deadline it sends up a little (3.008 s seen for 3 s).
    assert fresh.time_left is not None and DEADLINE_S - 0.2 < fresh.time_left < DEADLINE_S + 0.05
    # It waited about 0.55 s (0.6 less the 0.05 before it was sent).
    assert waited.time_left is not None
    assert DEADLINE_S - 1.2 < waited.time_left < DEADLINE_S - 0.4
