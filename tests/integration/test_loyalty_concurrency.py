"""Every limit holds when hundreds of real RPCs race, and when they are forced to queue; each
test runs against one loyalty server, then against two replicas behind one round-robin channel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
import pytest

from loyalty_service.store.purchases import LIVE_SQL
from protogen.loyalty.promo.v1 import promo_pb2
from tests.fixtures.auth import AuthTestServer, TestUser
from tests.fixtures.loyalty import LoyaltyTestServer
from tests.fixtures.replicas import Replicated, start_replicas, stop_replicas
from tests.integration.test_loyalty_promo import new_code

Code = grpc.StatusCode


@pytest.fixture(params=["one server", "two replicas"])
async def loyalty(
    request: pytest.FixtureRequest, auth_server: AuthTestServer, loyalty_server: LoyaltyTestServer
) -> AsyncIterator[LoyaltyTestServer]:
    if request.param == "one server":
        yield loyalty_server
        return
    # Fresh replicas per test, stopped after it: their pools must not hold PostgreSQL
    # connections (100 for every run on this machine) through the other tests.
    replicated = await start_replicas(auth_server)
    yield replicated.front
    await stop_replicas(replicated)


async def test_round_robin_spreads_calls_over_both_replicas(
    two_loyalty_replicas: Replicated, auth_server: AuthTestServer
) -> None:
    user = auth_server.token_for()
    before = dict(two_loyalty_replicas.calls)
    for _ in range(20):
        await two_loyalty_replicas.front.promo.ListTariffs(
            promo_pb2.ListTariffsRequest(), metadata=user.metadata()
        )
    served = {name: two_loyalty_replicas.calls[name] - before.get(name, 0) for name in "ab"}
    assert sum(served.values()) == 20 and min(served.values()) >= 5, served


async def _use_all(
    loyalty: LoyaltyTestServer, users: list[TestUser], code: str, request_id: str = ""
) -> tuple[list[promo_pb2.Purchase], list[grpc.aio.AioRpcError]]:
    calls = [
        loyalty.promo.UsePromoCode(
            promo_pb2.UsePromoCodeRequest(code=code, tariff_id="monthly", request_id=request_id),
            metadata=user.metadata(),
        )
        for user in users
    ]
    results: list[Any] = await asyncio.gather(*calls, return_exceptions=True)
    purchases = [r for r in results if isinstance(r, promo_pb2.Purchase)]
    errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(purchases) + len(errors) == len(users), [r for r in results if r not in purchases]
    return purchases, errors


async def _counters(loyalty: LoyaltyTestServer, code: str) -> tuple[int, int, int]:
    pool: asyncpg.Pool = loyalty.app.pool
    row = await pool.fetchrow(
        "SELECT promo_code_uses(c.code) AS uses,"
        " (SELECT count(*) FROM purchases p WHERE p.code = c.code"
        f"   AND p.status IN {LIVE_SQL}) AS held,"
        " (SELECT coalesce(sum(uses), 0) FROM user_code_uses x WHERE x.code = c.code) AS per_user"
        " FROM promo_codes c WHERE c.code = $1",
        code,
    )
    return row["uses"], row["held"], row["per_user"]


async def test_500_users_race_for_a_one_time_code(
    loyalty: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    code = new_code()
    await loyalty.create_code(admin, code=code, percent_off=50, max_uses=1)
    users = [auth_server.token_for() for _ in range(500)]
    purchases, errors = await _use_all(loyalty, users, code)
    assert len(purchases) == 1
    assert {e.code() for e in errors} == {Code.FAILED_PRECONDITION}
    assert await _counters(loyalty, code) == (1, 1, 1)


async def test_500_users_race_for_50_uses(
    loyalty: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    code = new_code()
    await loyalty.create_code(admin, code=code, percent_off=50, max_uses=50)
    users = [auth_server.token_for() for _ in range(500)]
    purchases, errors = await _use_all(loyalty, users, code)
    assert len(purchases) == 50 and len(errors) == 450
    assert len({p.user_id for p in purchases}) == 50
    assert await _counters(loyalty, code) == (50, 50, 50)


async def test_one_user_100_times_with_a_limit_of_2(
    loyalty: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    code = new_code()
    await loyalty.create_code(admin, code=code, percent_off=50, per_user_limit=2)
    user = auth_server.token_for()
    purchases, errors = await _use_all(loyalty, [user] * 100, code)
    assert len(purchases) == 2 and len(errors) == 98
    assert await _counters(loyalty, code) == (2, 2, 2)


async def test_100_calls_with_one_request_id_make_one_purchase(
    loyalty: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    code = new_code()
    await loyalty.create_code(admin, code=code, percent_off=50, per_user_limit=0)
    user = auth_server.token_for()
    purchases, errors = await _use_all(loyalty, [user] * 100, code, request_id="pay-1")
    assert errors == []
    assert len({p.purchase_id for p in purchases}) == 1
    assert await _counters(loyalty, code) == (1, 1, 1)


async def test_counters_match_purchases_after_a_burst_of_uses_and_cancels(
    loyalty: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    code = new_code()
    await loyalty.create_code(admin, code=code, percent_off=50, max_uses=120)
    users = [auth_server.token_for() for _ in range(200)]
    first, _ = await _use_all(loyalty, users, code)
    assert len(first) == 120
    by_owner = {u.user_id: u for u in users}
    cancels = [
        loyalty.promo.CancelPromoCodeUse(
            promo_pb2.CancelPromoCodeUseRequest(purchase_id=p.purchase_id),
            metadata=by_owner[p.user_id].metadata(),
        )
        for p in first[::2]
        for _ in range(2)  # each cancelled twice at once: the use comes back once
    ]
    settler = auth_server.service_token("purchases:settle")
    confirms = [
        loyalty.promo.ConfirmPurchase(
            promo_pb2.ConfirmPurchaseRequest(purchase_id=p.purchase_id),
            metadata=settler.metadata(),
        )
        for p in first[1::4]
    ]
    late = [auth_server.token_for() for _ in range(100)]
    uses = [
        loyalty.promo.UsePromoCode(
            promo_pb2.UsePromoCodeRequest(code=code, tariff_id="monthly"), metadata=u.metadata()
        )
        for u in late
    ]
    await asyncio.gather(*cancels, *confirms, *uses, return_exceptions=True)
    uses_taken, held, per_user = await _counters(loyalty, code)
    assert uses_taken == held == per_user
    assert uses_taken <= 120


async def test_uses_queued_behind_a_held_row_lock_still_stop_at_the_limit(
    loyalty: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    """Racing calls may finish one by one; here they are made to pile up on the code's
    counter rows (its slots: every one held, so each use waits for one to come free)."""
    code = new_code()
    await loyalty.create_code(admin, code=code, percent_off=50, max_uses=10)
    users = [auth_server.token_for() for _ in range(60)]
    holder = await asyncpg.connect(loyalty.app.settings.loyalty_database_url)
    # A use is one statement now, so the racers take every connection of the server's pool
    # at once and wait: the poll needs a connection of its own.
    watcher = await asyncpg.connect(loyalty.app.settings.loyalty_database_url)
    try:
        lock = holder.transaction()
        await lock.start()
        await holder.execute("SELECT 1 FROM promo_code_slots WHERE code = $1 FOR UPDATE", code)
        racing = asyncio.ensure_future(_use_all(loyalty, users, code))
        # Enough to force the queue, and within reach of two replicas' small pools.
        await _wait_for_lock_waiters(watcher, at_least=12)
        await lock.rollback()
        purchases, errors = await racing
    finally:
        await holder.close()
        await watcher.close()
    assert len(purchases) == 10 and len(errors) == 50
    assert await _counters(loyalty, code) == (10, 10, 10)


async def _wait_for_lock_waiters(
    pool: asyncpg.Pool | asyncpg.Connection, at_least: int, query_like: str = "%"
) -> None:
    """Polls until that many transactions wait on a row lock (deadline: 30 s), counting only
    statements whose text is LIKE `query_like`. Pass a connection of its own when the racers
    may take every connection of the server's pool."""
    deadline = asyncio.get_running_loop().time() + 30
    while asyncio.get_running_loop().time() < deadline:
        waiting = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            " AND query LIKE $1",
            query_like,
        )
        if waiting >= at_least:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} calls queued on the lock")


async def _slots(loyalty: LoyaltyTestServer, code: str) -> list[tuple[int, int]]:
    rows = await loyalty.app.pool.fetch(
        "SELECT uses_left, taken FROM promo_code_slots WHERE code = $1 ORDER BY slot", code
    )
    return [(r["uses_left"], r["taken"]) for r in rows]


async def test_a_hot_code_split_over_slots_is_exact_to_the_last_use_and_back(
    loyalty: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    """Hundreds of uses of one code at once take its uses from 32 slots; exactly the cap
    gets through, cancels and expiries give back exactly, and the uses given back are taken
    exactly once more."""
    code = new_code()
    await loyalty.create_code(admin, code=code, percent_off=50, max_uses=300)
    assert len(await _slots(loyalty, code)) == 32  # a capped code: up to 32
    users = [auth_server.token_for() for _ in range(400)]
    first, errors = await _use_all(loyalty, users, code)
    assert len(first) == 300 and len(errors) == 100
    assert {e.code() for e in errors} == {Code.FAILED_PRECONDITION}
    assert all(left == 0 for left, _ in await _slots(loyalty, code))
    assert await _counters(loyalty, code) == (300, 300, 300)

    by_owner = {u.user_id: u for u in users}
    cancelled = first[:80]
    await asyncio.gather(
        *(
            loyalty.promo.CancelPromoCodeUse(
                promo_pb2.CancelPromoCodeUseRequest(purchase_id=p.purchase_id),
                metadata=by_owner[p.user_id].metadata(),
            )
            for p in cancelled
        )
    )
    pool: asyncpg.Pool = loyalty.app.pool
    # Twenty more come back by expiry: made stale, then swept.
    stale = [p.purchase_id for p in first[80:100]]
    await pool.execute(
        "UPDATE purchases SET created_at = created_at - interval '2 hours'"
        " WHERE purchase_id = ANY($1::uuid[])",
        stale,
    )
    expired = 0
    while batch := await loyalty.app.promotions.expire_stale(
        datetime.now(UTC) - timedelta(hours=1)
    ):
        expired += batch
    assert expired >= 20
    slots = await _slots(loyalty, code)
    assert sum(left for left, _ in slots) == 100 and sum(taken for _, taken in slots) == 200
    assert await _counters(loyalty, code) == (200, 200, 200)

    late = [auth_server.token_for() for _ in range(250)]
    again, errors = await _use_all(loyalty, late, code)
    assert len(again) == 100 and len(errors) == 150
    assert all(left == 0 for left, _ in await _slots(loyalty, code))
    assert await _counters(loyalty, code) == (300, 300, 300)
