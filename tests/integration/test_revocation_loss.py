"""Revocation survives Redis losing its data: PostgreSQL holds the truth, auth rebuilds Redis's
copy, and no verifier accepts a revoked token in between.

Redis is shared with the other test runs, so the loss is simulated by deleting every key of a
prefix of this test's own (what a restart of a Redis that keeps nothing does to it); `make
drills` restarts the real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
import redis.asyncio as redis

from auth_service.store.sessions import PgSessions
from protogen.loyalty.auth.v1 import auth_pb2
from protogen.loyalty.promo.v1 import promo_pb2
from tests.conftest import TEST_ENV
from tests.fixtures.auth import AuthTestServer, TestUser, auth_settings, start_auth, stop_auth
from tests.fixtures.loyalty import LoyaltyTestServer, loyalty_settings, start_loyalty, stop_loyalty
from tests.fixtures.sync import eventually
from tests.grpc_helpers import error_info

Code = grpc.StatusCode
PREFIX = f"{TEST_ENV['REDIS_KEY_PREFIX']}loss:"


@dataclass
class Pair:
    auth: AuthTestServer
    loyalty: LoyaltyTestServer


@pytest.fixture(scope="module")
async def pair() -> AsyncIterator[Pair]:
    # No keeper running: each test runs it (or one tick of it) when it wants.
    auth = await start_auth(
        auth_settings(redis_key_prefix=PREFIX, auth_db_pool_size=4), keeper=False
    )
    loyalty = await start_loyalty(
        loyalty_settings(auth.address, redis_key_prefix=PREFIX, loyalty_db_pool_size=4)
    )
    yield Pair(auth, loyalty)
    await stop_loyalty(loyalty)
    await stop_auth(auth)


async def lose_redis_data() -> None:
    client = redis.from_url(TEST_ENV["REDIS_URL"])
    try:
        keys = [key async for key in client.scan_iter(match=f"{PREFIX}*", count=1000)]
        assert keys, "the marker at least was there"
        await client.delete(*keys)
    finally:
        await client.aclose()


async def answer(pair: Pair, user: TestUser) -> str:
    """What loyalty answers the token with: OK, or the code and reason of its refusal."""
    try:
        await pair.loyalty.promo.ListTariffs(
            promo_pb2.ListTariffsRequest(), metadata=user.metadata()
        )
    except grpc.aio.AioRpcError as error:
        return f"{error.code().name} {error_info(error).reason}"
    return "OK"


async def logged_out(pair: Pair) -> TestUser:
    user = await pair.auth.new_user()
    await pair.auth.auth.Logout(auth_pb2.LogoutRequest(refresh_token=user.refresh_token))
    return user


async def test_after_the_loss_verifiers_refuse_until_auth_restores_every_revocation(
    pair: Pair,
) -> None:
    revoked, live = await logged_out(pair), await pair.auth.new_user()
    assert await answer(pair, revoked) == "UNAUTHENTICATED UNAUTHENTICATED"
    await lose_redis_data()
    unknown = "UNAVAILABLE REVOCATIONS_RESTORING"
    assert await answer(pair, revoked) == unknown
    assert await answer(pair, live) == unknown
    assert await pair.auth.app.keeper.restore_if_lost()
    assert await answer(pair, revoked) == "UNAUTHENTICATED UNAUTHENTICATED"
    assert await answer(pair, live) == "OK"
    assert not await pair.auth.app.keeper.restore_if_lost(), "nothing to do the second time"


async def test_auth_itself_refuses_too_while_the_list_is_unknown(pair: Pair) -> None:
    admin = await pair.auth.new_admin()
    await lose_redis_data()
    call = pair.auth.admin.GetUser(
        auth_pb2.GetUserRequest(user_id=admin.user_id), metadata=admin.metadata()
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    assert raised.value.code() == Code.UNAVAILABLE
    await pair.auth.app.keeper.tick()
    await pair.auth.admin.GetUser(
        auth_pb2.GetUserRequest(user_id=admin.user_id), metadata=admin.metadata()
    )


async def test_with_the_keeper_running_no_call_ever_accepts_a_revoked_token(pair: Pair) -> None:
    revoked = [await logged_out(pair) for _ in range(3)]
    blocked = await pair.auth.new_user()
    await pair.auth.admin.SetUserStatus(
        auth_pb2.SetUserStatusRequest(user_id=blocked.user_id, status=auth_pb2.USER_STATUS_BLOCKED),
        metadata=(await pair.auth.new_admin()).metadata(),
    )
    keeper = asyncio.create_task(pair.auth.app.keeper.run())
    try:
        await lose_redis_data()
        seen: set[str] = set()

        async def all_refused() -> bool:
            answers = await asyncio.gather(*(answer(pair, u) for u in [*revoked, blocked]))
            seen.update(answers)
            return set(answers) == {"UNAUTHENTICATED UNAUTHENTICATED"}

        await eventually(all_refused, 15, "every revoked token refused again")
    finally:
        keeper.cancel()
    assert "OK" not in seen, seen


async def test_a_revocation_that_never_reached_redis_is_caught_up(pair: Pair) -> None:
    """Its transaction committed, then the write to Redis failed (say, Redis unreachable)."""
    user = await pair.auth.new_user()
    assert await answer(pair, user) == "OK"
    session_id = await pair.auth.app.pool.fetchval(
        "SELECT session_id::text FROM sessions WHERE user_id = $1", user.user_id
    )
    await PgSessions(pair.auth.app.pool).revoke(session_id)
    await pair.auth.app.keeper.tick()
    assert await answer(pair, user) == "UNAUTHENTICATED UNAUTHENTICATED"
