"""ApplyPromoCode and UsePromoCode through the gateway over HTTP, next to the same calls over gRPC.

.venv/bin/python -m bench.gateway_bench [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable

import aiohttp
import grpc

from bench.load import Result, drive
from bench.loyalty_bench import PASSWORD, bearer, create_codes, make_admin, tokens
from bench.system import System, running
from protogen.loyalty.auth.v1 import auth_pb2, auth_pb2_grpc
from protogen.loyalty.promo.v1 import promo_pb2, promo_pb2_grpc

IN_FLIGHT = 50


async def _wait_http(base: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(f"{base}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("gateway did not start")


async def scenarios(system: System, seconds: float) -> list[Result]:
    async with grpc.aio.insecure_channel(system.env["AUTH_GRPC_ADDR"]) as auth_channel:
        auth = auth_pb2_grpc.AuthServiceStub(auth_channel)
        make_admin(system)
        admin_pair = await auth.Login(
            auth_pb2.LoginRequest(email="admin@bench.example", password=PASSWORD)
        )
        users = await tokens(auth, 50)
    base = f"http://{system.env['GATEWAY_HTTP_ADDR']}"
    await _wait_http(base)
    async with grpc.aio.insecure_channel(system.env["LOYALTY_GRPC_ADDR"]) as channel:
        promo = promo_pb2_grpc.PromoServiceStub(channel)
        admin = promo_pb2_grpc.PromoAdminServiceStub(channel)
        codes = await create_codes(admin, bearer(admin_pair.access_token), 1000)
        headers = [{"Authorization": f"Bearer {meta[0][1].split()[1]}"} for meta in users]
        connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
        async with aiohttp.ClientSession(base, connector=connector) as http:

            async def post(path: str, i: int) -> None:
                body = {"code": codes[i % len(codes)], "tariffId": "monthly"}
                async with http.post(path, json=body, headers=headers[i % len(headers)]) as reply:
                    await reply.read()
                    if reply.status != 200:
                        raise RuntimeError(reply.status)

            def grpc_apply(i: int) -> Awaitable[object]:
                request = promo_pb2.ApplyPromoCodeRequest(
                    code=codes[i % len(codes)], tariff_id="monthly"
                )
                call: Awaitable[object] = promo.ApplyPromoCode(
                    request, metadata=users[i % len(users)]
                )
                return call

            def grpc_use(i: int) -> Awaitable[object]:
                request = promo_pb2.UsePromoCodeRequest(
                    code=codes[i % len(codes)], tariff_id="monthly"
                )
                call: Awaitable[object] = promo.UsePromoCode(
                    request, metadata=users[i % len(users)]
                )
                return call

            return [
                await drive("ApplyPromoCode over gRPC, 50 clients", grpc_apply, IN_FLIGHT, seconds),
                await drive(
                    "ApplyPromoCode over HTTP, 50 clients",
                    lambda i: post("/v1/promocodes/apply", i),
                    IN_FLIGHT,
                    seconds,
                ),
                await drive("UsePromoCode over gRPC, 50 clients", grpc_use, IN_FLIGHT, seconds),
                await drive(
                    "UsePromoCode over HTTP, 50 clients",
                    lambda i: post("/v1/promocodes/use", i),
                    IN_FLIGHT,
                    seconds,
                ),
            ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    with running(["auth_service", "loyalty_service", "gateway"]) as system:
        for result in asyncio.run(scenarios(system, args.seconds)):
            print(result.line())


if __name__ == "__main__":
    main()
