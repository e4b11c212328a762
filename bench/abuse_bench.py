"""Abuse figures: how fast one user can guess promo codes, and what a registration flood
does to a normal login.

.venv/bin/python -m bench.abuse_bench [--seconds 5] [--source DIR]

`--source` runs the services from another checkout (for example an export of an older commit:
`git archive COMMIT | tar -x -C /tmp/before`) to compare. Limits are the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections import Counter
from pathlib import Path

import grpc

from bench.load import percentile
from bench.system import ROOT, running
from protogen.loyalty.auth.v1 import auth_pb2, auth_pb2_grpc
from protogen.loyalty.promo.v1 import promo_pb2, promo_pb2_grpc

PASSWORD = "correct horse battery"
DEFAULTS = {
    "AUTH_LOGIN_LIMIT_PER_EMAIL_ADDRESS": "10",
    "AUTH_LOGIN_LIMIT_PER_EMAIL": "50",
    "AUTH_LOGIN_LIMIT_PER_ADDRESS": "100",
    "AUTH_REGISTER_LIMIT_PER_ADDRESS": "10",
    "LOYALTY_PROMO_FAILURES_PER_USER": "10",
    "LOYALTY_PROMO_FAILURES_PER_ADDRESS": "30",
    # The gateway's address in production; here the bench plays the gateway.
    "AUTH_TRUSTED_PEERS": "127.0.0.1",
    "LOYALTY_TRUSTED_PEERS": "127.0.0.1",
}


async def _user(auth: auth_pb2_grpc.AuthServiceStub, address: str) -> str:
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    metadata = (("x-forwarded-for", address),)
    await auth.Register(auth_pb2.RegisterRequest(email=email, password=PASSWORD), metadata=metadata)
    return email


async def guessing(env: dict[str, str], seconds: float, in_flight: int = 8) -> list[str]:
    """One user, one address, random codes as fast as the server answers."""
    async with (
        grpc.aio.insecure_channel(env["AUTH_GRPC_ADDR"]) as auth_channel,
        grpc.aio.insecure_channel(env["LOYALTY_GRPC_ADDR"]) as channel,
    ):
        auth = auth_pb2_grpc.AuthServiceStub(auth_channel)
        email = await _user(auth, "198.51.100.1")
        pair = await auth.Login(auth_pb2.LoginRequest(email=email, password=PASSWORD))
        metadata = (
            ("authorization", f"Bearer {pair.access_token}"),
            ("x-forwarded-for", "198.51.100.1"),
        )
        promo = promo_pb2_grpc.PromoServiceStub(channel)
        outcomes: Counter[str] = Counter()
        stop_at = time.perf_counter() + seconds

        async def guesser() -> None:
            while time.perf_counter() < stop_at:
                code = f"G{uuid.uuid4().hex[:11].upper()}"
                request = promo_pb2.ApplyPromoCodeRequest(code=code, tariff_id="monthly")
                try:
                    await promo.ApplyPromoCode(request, metadata=metadata)
                    outcomes["FOUND"] += 1
                except grpc.aio.AioRpcError as error:
                    outcomes[error.code().name] += 1

        await asyncio.gather(*(guesser() for _ in range(in_flight)))
    looked_up = outcomes["NOT_FOUND"] + outcomes["FOUND"]
    return [
        f"promo guessing, one user, {in_flight} in flight, {seconds:.0f} s:"
        f" {looked_up / seconds:.1f} guesses/s looked up ({looked_up} in all),"
        f" {outcomes['RESOURCE_EXHAUSTED'] / seconds:.0f}/s refused unlooked"
        f" ({dict(outcomes)})"
    ]


async def _logins(auth: auth_pb2_grpc.AuthServiceStub, email: str, count: int) -> list[float]:
    request = auth_pb2.LoginRequest(email=email, password=PASSWORD)
    metadata = (("x-forwarded-for", "192.0.2.10"),)
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        await auth.Login(request, metadata=metadata)
        samples.append(time.perf_counter() - started)
    return samples


def _summary(name: str, samples: list[float]) -> str:
    return (
        f"{name}: median {statistics.median(samples) * 1000:.0f} ms,"
        f" p90 {percentile(samples, 0.9) * 1000:.0f} ms ({len(samples)} logins)"
    )


async def registration_flood(
    env: dict[str, str], logins: int, flooders: int = 20, spread: bool = True
) -> list[str]:
    """Login latency alone, then while `flooders` clients register without pause: each from
    its own address (`spread`, what a botnet does) or all from one."""
    async with grpc.aio.insecure_channel(env["AUTH_GRPC_ADDR"]) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        email = await _user(auth, "192.0.2.10")
        await _logins(auth, email, 3)  # warm
        alone = await _logins(auth, email, logins)
        outcomes: Counter[str] = Counter()
        done = asyncio.Event()

        async def flooder(index: int) -> None:
            address = f"203.0.113.{index}" if spread else "203.0.113.1"
            while not done.is_set():
                try:
                    await _user(auth, address)
                    outcomes["OK"] += 1
                except grpc.aio.AioRpcError as error:
                    outcomes[error.code().name] += 1

        tasks = [asyncio.create_task(flooder(i)) for i in range(flooders)]
        await asyncio.sleep(1)  # the flood is under way
        during = await _logins(auth, email, logins)
        done.set()
        await asyncio.gather(*tasks)
    where = "each from its own address" if spread else "all from one address"
    return [
        _summary("login alone", alone),
        _summary(f"login during {flooders} flooding registrations ({where})", during),
        f"  registrations answered: {dict(outcomes)}",
    ]


async def measure(env: dict[str, str], seconds: float, logins: int) -> None:
    for part in (
        guessing(env, seconds),
        registration_flood(env, logins, spread=True),
        registration_flood(env, logins, spread=False),
    ):
        for line in await part:
            print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.abuse_bench")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--logins", type=int, default=30)
    parser.add_argument("--source", type=Path, default=ROOT)
    args = parser.parse_args()
    # A variable set in the environment wins (an older checkout may need other limits).
    limits = {name: os.environ.get(name, value) for name, value in DEFAULTS.items()}
    with running(["auth_service", "loyalty_service"], limits, args.source) as system:
        asyncio.run(measure(system.env, args.seconds, args.logins))


if __name__ == "__main__":
    main()
