"""Both services behind PgBouncer in transaction mode (a pooler of this test's own, on a free
port, in front of the machine's PostgreSQL): registrations and logins, uses of a capped code
racing, a request id sent twice, and the outbox relay and consumer carrying a registration to
loyalty's mirror, with every counter exact. Migrations and the relay's LISTEN go straight to
PostgreSQL (`*_DATABASE_DIRECT_URL`), as the operations guide says."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from bench.drills import pooler
from protogen.loyalty.promo.v1 import promo_pb2
from tests.conftest import PG, TEST_ENV
from tests.fixtures.auth import AuthTestServer, TestUser, auth_settings, start_auth, stop_auth
from tests.fixtures.loyalty import LoyaltyTestServer, loyalty_settings, start_loyalty, stop_loyalty
from tests.fixtures.sync import eventually, mirror

QUEUE = f"{TEST_ENV['LOYALTY_EVENTS_QUEUE']}.pgbouncer"


@dataclass
class Pooled:
    bouncer: pooler.PgBouncer
    auth: AuthTestServer
    loyalty: LoyaltyTestServer
    tasks: list[asyncio.Task[None]]


@pytest.fixture(scope="module")
async def pooled() -> AsyncIterator[Pooled]:
    bouncer = await asyncio.to_thread(pooler.start, PG, 10)
    auth_db, loyalty_db = TEST_ENV["AUTH_DATABASE_URL"], TEST_ENV["LOYALTY_DATABASE_URL"]
    auth = await start_auth(
        auth_settings(
            auth_database_url=bouncer.url(auth_db),
            auth_database_pooler="pgbouncer",
            auth_database_direct_url=auth_db,
            auth_db_pool_size=8,
        )
    )
    tasks = [asyncio.create_task(loop()) for loop in auth.app.loops]
    loyalty = await start_loyalty(
        loyalty_settings(
            auth.address,
            loyalty_database_url=bouncer.url(loyalty_db),
            loyalty_database_pooler="pgbouncer",
            loyalty_database_direct_url=loyalty_db,
            loyalty_db_pool_size=8,
            loyalty_events_queue=QUEUE,
        ),
        loops=True,
    )
    yield Pooled(bouncer, auth, loyalty, tasks)
    for task in tasks:
        task.cancel()
    await stop_loyalty(loyalty)
    await stop_auth(auth)
    await asyncio.to_thread(bouncer.stop)


async def _use(pooled: Pooled, user: TestUser, code: str, request_id: str) -> Any:
    request = promo_pb2.UsePromoCodeRequest(code=code, tariff_id="monthly", request_id=request_id)
    try:
        return await pooled.loyalty.promo.UsePromoCode(request, metadata=user.metadata())
    except grpc.aio.AioRpcError as error:
        return error.code()


async def test_the_pools_go_through_the_pooler(pooled: Pooled) -> None:
    for app in (pooled.auth.app, pooled.loyalty.app):
        port = await app.pool.fetchval("SELECT inet_server_port()")
        assert port == 5432  # PostgreSQL answers ...
    assert f":{pooled.bouncer.port}/" in pooled.auth.app.settings.auth_database_url
    assert f":{pooled.bouncer.port}/" in pooled.loyalty.app.settings.loyalty_database_url
    log = pooled.bouncer.log()
    assert "auth_test_" in log and "loyalty_test_" in log  # ... to the pooler's connections


async def test_registrations_logins_and_racing_uses_are_exact(pooled: Pooled) -> None:
    people = [await pooled.auth.new_user() for _ in range(3)]  # register and login, for real
    admin = await pooled.auth.new_admin()
    code = f"PGB{uuid.uuid4().hex[:10].upper()}"
    await pooled.loyalty.create_code(admin, code=code, percent_off=20, max_uses=50)
    users = people + [pooled.auth.token_for() for _ in range(197)]
    ids = {user.user_id: uuid.uuid4().hex for user in users}
    first = await asyncio.gather(*(_use(pooled, u, code, ids[u.user_id]) for u in users))
    made = [r for r in first if isinstance(r, promo_pb2.Purchase)]
    assert len(made) == 50, {r for r in first if not isinstance(r, promo_pb2.Purchase)}
    assert {r for r in first if not isinstance(r, promo_pb2.Purchase)} == {
        grpc.StatusCode.FAILED_PRECONDITION
    }
    # The same request ids again: the same purchases, no new use taken.
    winners = [u for u in users if any(p.user_id == u.user_id for p in made)]
    again = await asyncio.gather(*(_use(pooled, u, code, ids[u.user_id]) for u in winners))
    assert {p.purchase_id for p in again} == {p.purchase_id for p in made}
    row = await pooled.loyalty.app.pool.fetchrow(
        "SELECT promo_code_uses($1) AS uses, (SELECT count(*) FROM purchases"
        " WHERE code = $1 AND status IN ('PENDING', 'COMPLETED')) AS held",
        code,
    )
    assert (row["uses"], row["held"]) == (50, 50)


async def test_the_outbox_reaches_loyalty_through_the_pooler(pooled: Pooled) -> None:
    user = await pooled.auth.new_user()

    async def mirrored() -> bool:
        return user.user_id in await mirror(pooled.loyalty, [user.user_id])

    await eventually(mirrored, 20, "the registration reached loyalty's mirror")
