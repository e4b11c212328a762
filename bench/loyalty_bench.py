"""ApplyPromoCode and UsePromoCode over gRPC against the real processes.

    .venv/bin/python -m bench.loyalty_bench [--seconds 10]

Scenarios: 50 clients spread over many codes (apply, use), and 200 clients all using one
multi-use code. The generator keeps a fixed number of calls in flight for a bounded time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable

import grpc

from bench.admitted import patiently
from bench.load import Result, drive
from bench.system import ROOT, System, running
from protogen.loyalty.auth.v1 import auth_pb2, auth_pb2_grpc
from protogen.loyalty.promo.v1 import promo_pb2, promo_pb2_grpc

PASSWORD = "correct horse battery"
Meta = tuple[tuple[str, str], ...]


def bearer(token: str) -> Meta:
    return (("authorization", f"Bearer {token}"),)


async def tokens(auth: auth_pb2_grpc.AuthServiceStub, count: int) -> list[Meta]:
    async def one(index: int) -> Meta:
        email = f"bench-{index}-{uuid.uuid4().hex[:6]}@example.com"
        register = auth_pb2.RegisterRequest(email=email, password=PASSWORD)
        await patiently(lambda: auth.Register(register))
        login = auth_pb2.LoginRequest(email=email, password=PASSWORD)
        pair = await patiently(lambda: auth.Login(login))
        return bearer(pair.access_token)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


def make_admin(system: System) -> None:
    env = {**system.env, "AUTH_ADMIN_PASSWORD": PASSWORD}
    subprocess.run(
        [sys.executable, "-m", "auth_service", "create-admin", "--email", "admin@bench.example"],
        env=env,
        check=True,
        cwd=ROOT,
        capture_output=True,
    )


async def create_codes(
    admin: promo_pb2_grpc.PromoAdminServiceStub, meta: Meta, count: int
) -> list[str]:
    spec = promo_pb2.PromoCodeSpec(percent_off=10, all_users=True, max_uses=0, per_user_limit=0)
    made = await admin.GeneratePromoCodes(
        promo_pb2.GeneratePromoCodesRequest(spec=spec, count=count, prefix="BENCH"), metadata=meta
    )
    return list(made.codes)


async def scenarios(system: System, seconds: float) -> list[Result]:
    async with grpc.aio.insecure_channel(system.env["AUTH_GRPC_ADDR"]) as auth_channel:
        auth = auth_pb2_grpc.AuthServiceStub(auth_channel)
        make_admin(system)
        admin_pair = await auth.Login(
            auth_pb2.LoginRequest(email="admin@bench.example", password=PASSWORD)
        )
        users = await tokens(auth, 50)
    admin_meta = bearer(admin_pair.access_token)
    async with grpc.aio.insecure_channel(system.env["LOYALTY_GRPC_ADDR"]) as channel:
        promo = promo_pb2_grpc.PromoServiceStub(channel)
        admin = promo_pb2_grpc.PromoAdminServiceStub(channel)
        codes = await create_codes(admin, admin_meta, 1000)
        hot = await create_codes(admin, admin_meta, 1)

        def apply(i: int) -> Awaitable[object]:
            request = promo_pb2.ApplyPromoCodeRequest(
                code=codes[i % len(codes)], tariff_id="monthly"
            )
            call: Awaitable[object] = promo.ApplyPromoCode(request, metadata=users[i % len(users)])
            return call

        def use(i: int, pool: list[str] = codes) -> Awaitable[object]:
            request = promo_pb2.UsePromoCodeRequest(code=pool[i % len(pool)], tariff_id="monthly")
            call: Awaitable[object] = promo.UsePromoCode(request, metadata=users[i % len(users)])
            return call

        return [
            await drive("ApplyPromoCode, 50 clients, 1000 codes", apply, 50, seconds),
            await drive("UsePromoCode, 50 clients, 1000 codes", use, 50, seconds),
            await drive("UsePromoCode, 200 clients, one code", lambda i: use(i, hot), 200, seconds),
        ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    with running(["auth_service", "loyalty_service"]) as system:
        for result in asyncio.run(scenarios(system, args.seconds)):
            print(result.line())


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
