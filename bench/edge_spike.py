"""Issue 27's two spikes with HAProxy in front of loyalty (bench.edge_proxy): the proxy holds the
calls in flight to loyalty and a short queue, and refuses the rest at once with the services'
overload status; capacity is the one-code Use rate measured through the same proxy, and, for
comparison, straight to loyalty. The system runs loyalty behind its edge (common.processes.edge)
and `make bench` measures the spikes there; this pairs the two paths in one run, on a loyalty
of its own reached by its TCP port (docs/performance-notes.md).

    .venv/bin/python -m bench.edge_spike [--seconds 30] [--in-flight 16] [--queued 16]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable

from bench import edge_proxy, spike
from bench.load import Result, drive
from bench.loyalty_bench import Meta
from bench.ports import free_port
from bench.spread import spread_stub
from bench.system import System, running
from bench.targets import table
from bench.verdicts import OVER, UNDER
from protogen.loyalty.promo.v1 import promo_pb2, promo_pb2_grpc


async def capacity(system: System, users: tuple[Meta, list[Meta]], seconds: float) -> Result:
    """UsePromoCode on one code with room for every call, as bench.run measures capacity."""
    admin, metas = users
    address = system.env["LOYALTY_GRPC_ADDR"]
    promo, channels = spread_stub(address, promo_pb2_grpc.PromoServiceStub)
    admin_stub, admin_channels = spread_stub(address, promo_pb2_grpc.PromoAdminServiceStub)
    try:
        code = await spike.create_code(admin_stub, admin, 10_000_000, 1_000_000)

        def use(i: int) -> Awaitable[object]:
            request = promo_pb2.UsePromoCodeRequest(code=code, tariff_id="monthly")
            call: Awaitable[object] = promo.UsePromoCode(request, metadata=metas[i % len(metas)])
            return call

        clients = spike.CAPACITY_CLIENTS
        return await drive(
            f"Use, one code, {clients} clients, via {address}", use, clients, seconds
        )
    finally:
        for channel in [*channels, *admin_channels]:
            await channel.close()


def spikes(system: System, users: tuple[Meta, list[Meta]], capacity: float, seconds: float) -> None:
    for share in (UNDER, OVER):
        found = asyncio.run(spike.measure(system, share * capacity, seconds, users))
        print(found.line())
        judged = spike.over_capacity if share > 1 else spike.under_capacity
        print("\n".join(table(judged(found, capacity))))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--capacity-seconds", type=float, default=10)
    # 16 and 16 did better than 32 and 32 (admitted p99 155 against 397 ms): performance-notes.
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--queued", type=int, default=16)
    parser.add_argument("--servers", type=int, default=4)
    args = parser.parse_args()
    with running(["auth_service", "loyalty_service"]) as system:
        users = asyncio.run(spike.prepare(system))
        direct = asyncio.run(capacity(system, users, args.capacity_seconds))
        print(f"{direct.line()}; served {direct.answered_rps:.0f}/s")
        spikes(system, users, direct.answered_rps, args.seconds)
        front = f"127.0.0.1:{free_port()}"
        loyalty = system.env["LOYALTY_GRPC_ADDR"]
        options = {"queued": args.queued, "servers": args.servers}
        with edge_proxy.running(front, loyalty, args.in_flight, **options) as proxy:
            edged = System(
                {**system.env, "LOYALTY_GRPC_ADDR": front},
                {**system.processes, "haproxy": proxy},  # type: ignore[dict-item]
            )
            proxied = asyncio.run(capacity(edged, users, args.capacity_seconds))
            print(f"{proxied.line()}; served {proxied.answered_rps:.0f}/s")
            spikes(edged, users, proxied.answered_rps, args.seconds)


if __name__ == "__main__":
    main()
