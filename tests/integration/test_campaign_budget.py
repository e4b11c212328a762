"""A money budget is exact under any concurrency, and cancels and expiry give discounts back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest

from loyalty_service.store.purchases import LIVE_SQL
from protogen.loyalty.promo.v1 import promo_pb2
from tests.fixtures.auth import AuthTestServer, TestUser
from tests.fixtures.loyalty import (
    LoyaltyTestServer,
    loyalty_settings,
    start_loyalty,
    stop_loyalty,
)
from tests.grpc_helpers import error_info
from tests.integration.test_loyalty_concurrency import _wait_for_lock_waiters
from tests.integration.test_loyalty_promo import money, new_code

HALF_OF_MONTHLY = 14950  # 50% of 299.00


async def _use(
    loyalty: LoyaltyTestServer, user: TestUser, code: str
) -> promo_pb2.Purchase | grpc.aio.AioRpcError:
    try:
        purchase: promo_pb2.Purchase = await loyalty.promo.UsePromoCode(
            promo_pb2.UsePromoCodeRequest(code=code, tariff_id="monthly"), metadata=user.metadata()
        )
    except grpc.aio.AioRpcError as error:
        return error
    return purchase


async def _race(
    loyalty: LoyaltyTestServer, users: list[TestUser], code: str
) -> tuple[list[promo_pb2.Purchase], list[str]]:
    results = await asyncio.gather(*(_use(loyalty, u, code) for u in users))
    made = [r for r in results if isinstance(r, promo_pb2.Purchase)]
    reasons = [error_info(r).reason for r in results if isinstance(r, grpc.aio.AioRpcError)]
    return made, reasons


async def _ledger(loyalty: LoyaltyTestServer, code: str) -> tuple[int, int, int]:
    """(budget_spent, the live purchases' discounts, uses) as stored now."""
    row = await loyalty.app.pool.fetchrow(
        "SELECT c.budget_spent_minor, promo_code_uses(c.code) AS uses,"
        " (SELECT coalesce(sum(discount_minor), 0)"
        f"   FROM purchases p WHERE p.code = c.code AND p.status IN {LIVE_SQL})"
        "   AS live FROM promo_codes c WHERE c.code = $1",
        code,
    )
    return row["budget_spent_minor"], row["live"], row["uses"]


async def _budget_code(loyalty: LoyaltyTestServer, admin: TestUser, uses: int) -> str:
    code = new_code()
    await loyalty.create_code(
        admin, code=code, percent_off=50, per_user_limit=0, budget=money(HALF_OF_MONTHLY * uses)
    )
    return code


async def test_50_users_race_for_a_budget_of_exactly_5_uses(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    code = await _budget_code(loyalty_server, admin, uses=5)
    made, reasons = await _race(loyalty_server, [auth_server.token_for() for _ in range(50)], code)
    assert len(made) == 5 and reasons == ["PROMO_CODE_BUDGET_SPENT"] * 45
    assert await _ledger(loyalty_server, code) == (5 * HALF_OF_MONTHLY, 5 * HALF_OF_MONTHLY, 5)
    # Cancelling one gives its discount back: exactly one more of the next 20 gets through.
    owner = auth_server.token_for(made[0].user_id)
    await loyalty_server.promo.CancelPromoCodeUse(
        promo_pb2.CancelPromoCodeUseRequest(purchase_id=made[0].purchase_id),
        metadata=owner.metadata(),
    )
    again, reasons = await _race(loyalty_server, [auth_server.token_for() for _ in range(20)], code)
    assert len(again) == 1 and len(reasons) == 19
    assert await _ledger(loyalty_server, code) == (5 * HALF_OF_MONTHLY, 5 * HALF_OF_MONTHLY, 5)
    report = await loyalty_server.admin.GetPromoCodeReport(
        promo_pb2.GetPromoCodeReportRequest(code=code), metadata=admin.metadata()
    )
    assert report.discount_granted == money(5 * HALF_OF_MONTHLY)
    assert report.budget == money(5 * HALF_OF_MONTHLY)
    assert report.rejections_by_reason["PROMO_CODE_BUDGET_SPENT"] == 45 + 19


async def test_uses_queued_behind_a_held_row_still_stop_at_the_budget(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    """The racers are made to pile up on the code's row, then let go at once."""
    code = await _budget_code(loyalty_server, admin, uses=5)
    users = [auth_server.token_for() for _ in range(40)]
    holder = await asyncpg.connect(loyalty_server.app.settings.loyalty_database_url)
    # The shared server's pool may already be warm: 40 racers then take all of it, so the
    # poll needs a connection of its own.
    watcher = await asyncpg.connect(loyalty_server.app.settings.loyalty_database_url)
    try:
        lock = holder.transaction()
        await lock.start()
        await holder.execute("SELECT 1 FROM promo_codes WHERE code = $1 FOR UPDATE", code)
        racing = asyncio.ensure_future(_race(loyalty_server, users, code))
        # More waiters than the budget has uses: enough to prove they all met at the row.
        await _wait_for_lock_waiters(watcher, at_least=10)
        await lock.rollback()
        made, reasons = await racing
    finally:
        await holder.close()
        await watcher.close()
    assert len(made) == 5 and set(reasons) == {"PROMO_CODE_BUDGET_SPENT"}
    assert await _ledger(loyalty_server, code) == (5 * HALF_OF_MONTHLY, 5 * HALF_OF_MONTHLY, 5)


@pytest.fixture
async def sweeping(auth_server: AuthTestServer) -> AsyncIterator[LoyaltyTestServer]:
    settings = loyalty_settings(
        auth_server.address,
        purchase_pending_ttl_seconds=0.3,
        sweeper_interval_seconds=0.05,
        loyalty_db_pool_size=10,
    )
    server = await start_loyalty(settings, loops=True)
    yield server
    await stop_loyalty(server)


async def _watch(loyalty: LoyaltyTestServer, code: str, budget: int, stop: asyncio.Event) -> int:
    """Reads the live discounts over and over while the others race; returns how many reads."""
    reads = 0
    while not stop.is_set():
        spent, live, _ = await _ledger(loyalty, code)
        assert live <= budget and spent <= budget, (live, spent, budget)
        reads += 1
        await asyncio.sleep(0)
    return reads


async def test_the_budget_holds_at_every_moment_with_cancels_and_the_sweeper(
    sweeping: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    code = await _budget_code(sweeping, admin, uses=8)
    budget = 8 * HALF_OF_MONTHLY
    users = [auth_server.token_for() for _ in range(30)]
    stop = asyncio.Event()
    watcher = asyncio.ensure_future(_watch(sweeping, code, budget, stop))
    made: list[promo_pb2.Purchase] = []
    try:
        for _ in range(4):
            wave, _ = await _race(sweeping, users, code)
            made += wave
            cancels: list[Any] = [
                sweeping.promo.CancelPromoCodeUse(
                    promo_pb2.CancelPromoCodeUseRequest(purchase_id=p.purchase_id),
                    metadata=next(u for u in users if u.user_id == p.user_id).metadata(),
                )
                for p in wave[::2]
            ]
            await asyncio.gather(*cancels, return_exceptions=True)
    finally:
        stop.set()
        reads = await watcher
    assert reads > 10
    assert len(made) > 8  # cancels and expiries gave discounts back for more to get through
    await _until_no_pending(sweeping, code)
    spent, live, uses = await _ledger(sweeping, code)
    assert spent == live == 0 and uses == 0  # everything was cancelled or expired


async def _until_no_pending(loyalty: LoyaltyTestServer, code: str) -> None:
    deadline = asyncio.get_running_loop().time() + 20
    while await loyalty.app.pool.fetchval(
        "SELECT count(*) FROM purchases WHERE code = $1 AND status = 'PENDING'", code
    ):
        assert asyncio.get_running_loop().time() < deadline, "the sweeper left pending purchases"
        await asyncio.sleep(0.05)


async def test_cancel_racing_confirm_100_times_keeps_counters_equal_to_live_purchases(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    """medusa#16595: a cancel racing a confirm lost a use. Here one wins, and counts match."""
    code = new_code()
    await loyalty_server.create_code(
        admin, code=code, percent_off=50, per_user_limit=0, budget=money(10**9)
    )
    user, settler = auth_server.token_for(), auth_server.service_token("purchases:settle")
    outcomes = []
    for n in range(100):
        purchase = await loyalty_server.promo.UsePromoCode(
            promo_pb2.UsePromoCodeRequest(code=code, tariff_id="monthly", request_id=f"r{n}"),
            metadata=user.metadata(),
        )
        ask = promo_pb2.ConfirmPurchaseRequest(purchase_id=purchase.purchase_id)
        cancel = promo_pb2.CancelPromoCodeUseRequest(purchase_id=purchase.purchase_id)
        results = await asyncio.gather(
            loyalty_server.promo.ConfirmPurchase(ask, metadata=settler.metadata()),
            loyalty_server.promo.CancelPromoCodeUse(cancel, metadata=user.metadata()),
            return_exceptions=True,
        )
        outcomes.append(tuple(isinstance(r, promo_pb2.Purchase) for r in results))
    # Exactly one of each pair went through, never both, never neither.
    assert all(sum(pair) == 1 for pair in outcomes), outcomes
    completed = sum(1 for confirmed, _ in outcomes if confirmed)
    spent, live, uses = await _ledger(loyalty_server, code)
    assert uses == completed and live == spent == completed * HALF_OF_MONTHLY
    held = await loyalty_server.app.pool.fetchval(
        "SELECT uses FROM user_code_uses WHERE code = $1", code
    )
    assert held == completed
