"""Auth latency: a login (argon2 verify + session) and an access-token check.

.venv/bin/python -m bench.auth_bench [--logins 200]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import grpc
import redis.asyncio as redis

from bench.load import drive, median_ms, percentile
from bench.system import running
from common.access.access_tokens import TokenVerifier
from common.access.revocation import RevocationList
from protogen.loyalty.auth.v1 import auth_pb2, auth_pb2_grpc

PASSWORD = "correct horse battery"


async def measure(env: dict[str, str], logins: int) -> list[str]:
    async with grpc.aio.insecure_channel(env["AUTH_GRPC_ADDR"]) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        email = "bench@example.com"
        await auth.Register(auth_pb2.RegisterRequest(email=email, password=PASSWORD))
        request = auth_pb2.LoginRequest(email=email, password=PASSWORD)
        samples = []
        for _ in range(logins):
            started = time.perf_counter()
            pair = await auth.Login(request)
            samples.append(time.perf_counter() - started)
        parallel = await drive("Login, 8 in flight", lambda _: auth.Login(request), 8, 5)

        async def jwks() -> dict[str, object]:
            keys = await auth.GetJwks(auth_pb2.GetJwksRequest())
            return {
                "keys": [{"kty": k.kty, "crv": k.crv, "x": k.x, "kid": k.kid} for k in keys.keys]
            }

        client = redis.from_url(env.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
        verifier = TokenVerifier(jwks, RevocationList(client, env["REDIS_KEY_PREFIX"]), "bench")
        await verifier.verify(pair.access_token)
        checks = []
        for _ in range(2000):
            started = time.perf_counter()
            await verifier.verify(pair.access_token)
            checks.append(time.perf_counter() - started)
        await client.aclose()
    return [
        f"login (sequential, {logins}): median {median_ms(samples):.1f} ms,"
        f" p99 {percentile(samples, 0.99) * 1000:.1f} ms",
        parallel.line(),
        f"token check (signature + Redis revocation, 2000): median {median_ms(checks):.3f} ms,"
        f" p99 {percentile(checks, 0.99) * 1000:.3f} ms",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--logins", type=int, default=200)
    args = parser.parse_args()
    with running(["auth_service"]) as system:
        for line in asyncio.run(measure(system.env, args.logins)):
            print(line)


if __name__ == "__main__":
    main()
