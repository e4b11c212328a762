"""The first call after Redis or PostgreSQL comes back succeeds: pooled connections that died
with the dependency are replaced (PostgreSQL) or retried once more (Redis), transparently.

Each dependency is reached through a TCP proxy that the test cuts (every connection dropped,
nothing listening) and opens again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import grpc
import pytest

from protogen.loyalty.auth.v1 import auth_pb2
from protogen.loyalty.promo.v1 import promo_pb2
from tests.conftest import TEST_ENV
from tests.fixtures.auth import PASSWORD, AuthTestServer, auth_settings, start_auth, stop_auth
from tests.fixtures.loyalty import LoyaltyTestServer, loyalty_settings, start_loyalty, stop_loyalty
from tests.tcp_proxy import TcpProxy

Code = grpc.StatusCode


def _through(url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{proxy.port}" if credentials else f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass
class Proxied:
    redis: TcpProxy
    postgres: TcpProxy
    auth: AuthTestServer
    loyalty: LoyaltyTestServer


@pytest.fixture(scope="module")
async def proxied() -> AsyncIterator[Proxied]:
    redis_url, pg_url = urlsplit(TEST_ENV["REDIS_URL"]), urlsplit(TEST_ENV["AUTH_DATABASE_URL"])
    redis = TcpProxy(redis_url.hostname or "127.0.0.1", redis_url.port or 6379)
    postgres = TcpProxy(pg_url.hostname or "127.0.0.1", pg_url.port or 5432)
    await redis.open()
    await postgres.open()
    auth = await start_auth(
        auth_settings(
            redis_url=_through(TEST_ENV["REDIS_URL"], redis),
            auth_database_url=_through(TEST_ENV["AUTH_DATABASE_URL"], postgres),
            auth_db_pool_size=4,
        )
    )
    loyalty = await start_loyalty(
        loyalty_settings(
            auth.address,
            redis_url=_through(TEST_ENV["REDIS_URL"], redis),
            loyalty_database_url=_through(TEST_ENV["LOYALTY_DATABASE_URL"], postgres),
            loyalty_db_pool_size=4,
        )
    )
    yield Proxied(redis, postgres, auth, loyalty)
    await stop_loyalty(loyalty)
    await stop_auth(auth)
    await redis.cut()
    await postgres.cut()


async def _login(proxied: Proxied, email: str) -> auth_pb2.TokenPair:
    pair: auth_pb2.TokenPair = await proxied.auth.auth.Login(
        auth_pb2.LoginRequest(email=email, password=PASSWORD)
    )
    return pair


async def _purchases(proxied: Proxied, token: str) -> None:
    """Verifies the token (Redis) and reads the user's purchases (PostgreSQL)."""
    await proxied.loyalty.promo.ListMyPurchases(
        promo_pb2.ListMyPurchasesRequest(), metadata=(("authorization", f"Bearer {token}"),)
    )


@pytest.mark.parametrize("dependency", ["redis", "postgres"])
async def test_the_first_calls_after_a_dependency_comes_back_succeed(
    proxied: Proxied, dependency: str
) -> None:
    user = await proxied.auth.new_user()
    # Every pooled connection has been used, so each is now a connection the cut kills.
    await _purchases(proxied, user.access_token)
    proxy: TcpProxy = getattr(proxied, dependency)
    await proxy.cut()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _login(proxied, user.email)
    assert raised.value.code() == Code.UNAVAILABLE
    await proxy.open()
    pair = await _login(proxied, user.email)
    await _purchases(proxied, pair.access_token)
