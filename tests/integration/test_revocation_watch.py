"""The local copy of the revoked sessions (common.access.revocation_watch) against the real Redis: a
revocation written by auth reaches another verifier without that verifier asking Redis; when
the copy cannot be trusted (its connection killed, the marker gone) the verifier asks Redis
again, and no revoked token is accepted at any moment.

The second verifier is built here as loyalty builds its own (its own Redis connections, the
same classes); only Redis joins it to auth."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio as redis

from common.access.access_tokens import TokenVerifier
from common.access.revocation import RevocationList
from common.access.revocation_watch import RevocationWatch
from common.errors import ServiceError
from protogen.loyalty.auth.v1 import auth_pb2
from tests.conftest import TEST_ENV
from tests.fixtures.auth import AuthTestServer, TestUser, auth_settings, start_auth, stop_auth
from tests.fixtures.sync import eventually

PREFIX = f"{TEST_ENV['REDIS_KEY_PREFIX']}watch:"
REVOKED = "UNAUTHENTICATED UNAUTHENTICATED"
UNKNOWN = "UNAVAILABLE REVOCATIONS_RESTORING"
BOUND_S = 5.0  # polls give up after this; a revocation normally arrives in well under 1 s


class CountedRevocations(RevocationList):
    """The Redis list, counting how often the verifier had to ask Redis."""

    asked = 0

    async def is_revoked(self, session_id: str) -> bool:
        self.asked += 1
        return await super().is_revoked(session_id)


@dataclass
class Verifier:
    """Another process's token check: its own Redis client, list, copy and verifier."""

    client: redis.Redis
    revocations: CountedRevocations
    watch: RevocationWatch
    verifier: TokenVerifier

    async def answer(self, user: TestUser) -> str:
        try:
            await self.verifier.verify(user.access_token)
        except ServiceError as error:
            return f"{error.kind.name} {error.reason}"
        return "OK"


@pytest.fixture(scope="module")
async def auth() -> AsyncIterator[AuthTestServer]:
    server = await start_auth(
        auth_settings(redis_key_prefix=PREFIX, auth_db_pool_size=4), keeper=False
    )
    await server.app.keeper.restore_if_lost()
    yield server
    await stop_auth(server)


@pytest.fixture
async def other(auth: AuthTestServer) -> AsyncIterator[Verifier]:
    client = redis.from_url(TEST_ENV["REDIS_URL"])
    revocations = CountedRevocations(client, PREFIX)
    watch = RevocationWatch(TEST_ENV["REDIS_URL"], revocations)
    verifier = TokenVerifier(auth.app.accounts.issuer.jwks, revocations, "test", watch)
    task = asyncio.create_task(watch.run())
    try:
        await eventually(_is(lambda: watch.live), BOUND_S, "the copy goes live")
        yield Verifier(client, revocations, watch, verifier)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()


def _is(predicate: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return predicate()

    return check


async def logout(auth: AuthTestServer, user: TestUser) -> None:
    await auth.auth.Logout(auth_pb2.LogoutRequest(refresh_token=user.refresh_token))


async def refused(other: Verifier, user: TestUser) -> bool:
    return await other.answer(user) == REVOKED


async def test_a_logout_reaches_the_other_verifier_which_never_asks_redis(
    auth: AuthTestServer, other: Verifier
) -> None:
    user = await auth.new_user()
    assert await other.answer(user) == "OK"
    await logout(auth, user)
    await eventually(lambda: refused(other, user), BOUND_S, "the other verifier refuses")
    assert await other.answer(user) == REVOKED
    assert other.revocations.asked == 0, "every answer came from the local copy"


async def test_a_killed_subscription_falls_back_to_redis_and_never_accepts_a_revoked_token(
    auth: AuthTestServer, other: Verifier
) -> None:
    before, during, live = await auth.new_user(), await auth.new_user(), await auth.new_user()
    await logout(auth, before)
    await eventually(lambda: refused(other, before), BOUND_S, "the copy knows `before`")
    await other.client.client_kill_filter(_id=str(other.watch.client_id))
    await eventually(_is(lambda: not other.watch.live), BOUND_S, "the copy stops trusting")
    asked = other.revocations.asked
    await logout(auth, during)  # while nothing follows Redis: only Redis knows
    answers = {await other.answer(u) for u in (before, during)}
    assert answers == {REVOKED}
    assert await other.answer(live) == "OK"
    assert other.revocations.asked > asked, "while unsure, the verifier asked Redis"
    seen: set[str] = set()

    async def live_again() -> bool:
        seen.update({await other.answer(before), await other.answer(during)})
        return other.watch.live

    await eventually(live_again, BOUND_S, "the copy reconnects and reloads")
    asked = other.revocations.asked
    assert {await other.answer(before), await other.answer(during)} == {REVOKED}
    assert other.revocations.asked == asked, "live again: the copy answers"
    assert seen == {REVOKED}


async def test_a_missing_marker_untrusts_the_copy_until_auth_restores_it(
    auth: AuthTestServer, other: Verifier
) -> None:
    revoked, live = await auth.new_user(), await auth.new_user()
    await logout(auth, revoked)
    await eventually(lambda: refused(other, revoked), BOUND_S, "the copy knows `revoked`")
    await other.client.delete(other.revocations.marker_key)
    await eventually(_is(lambda: not other.watch.live), BOUND_S, "the copy stops trusting")
    assert await other.answer(live) == UNKNOWN
    assert await other.answer(revoked) == UNKNOWN
    assert await auth.app.keeper.restore_if_lost()
    assert await other.answer(revoked) == REVOKED  # from Redis, or the copy once live
    await eventually(_is(lambda: other.watch.live), BOUND_S, "the copy is trusted again")
    assert await other.answer(live) == "OK"
    assert await other.answer(revoked) == REVOKED


async def test_the_copy_loads_revocations_written_before_it_started(
    auth: AuthTestServer, other: Verifier
) -> None:
    """A process that starts late reads the whole list, not only what happens after."""
    user = await auth.new_user()
    await logout(auth, user)
    client = redis.from_url(TEST_ENV["REDIS_URL"])
    late = RevocationWatch(TEST_ENV["REDIS_URL"], RevocationList(client, PREFIX))
    task = asyncio.create_task(late.run())
    try:
        await eventually(_is(lambda: late.live), BOUND_S, "the late copy goes live")
        session_id = await auth.app.pool.fetchval(
            "SELECT session_id::text FROM sessions WHERE user_id = $1", user.user_id
        )
        assert late.knows(session_id) is True
        assert late.knows("00000000-0000-0000-0000-000000000000") is False
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()
