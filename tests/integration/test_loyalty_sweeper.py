"""The sweeper expires stale PENDING purchases and gives their uses back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from protogen.loyalty.promo.v1 import promo_pb2
from tests.fixtures.auth import AuthTestServer, TestUser
from tests.fixtures.loyalty import (
    LoyaltyTestServer,
    loyalty_settings,
    start_loyalty,
    stop_loyalty,
)
from tests.grpc_helpers import reason_of
from tests.integration.test_loyalty_promo import new_code


@pytest.fixture
async def sweeping_loyalty(auth_server: AuthTestServer) -> AsyncIterator[LoyaltyTestServer]:
    settings = loyalty_settings(
        auth_server.address, purchase_pending_ttl_seconds=1.0, sweeper_interval_seconds=0.2
    )
    server = await start_loyalty(settings, loops=True)
    yield server
    await stop_loyalty(server)


async def test_stale_pending_purchases_expire_and_return_their_uses(
    sweeping_loyalty: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    code = new_code()
    await sweeping_loyalty.create_code(admin, code=code, percent_off=10, max_uses=2)
    buyers = [auth_server.token_for() for _ in range(2)]
    made = [
        await sweeping_loyalty.promo.UsePromoCode(
            promo_pb2.UsePromoCodeRequest(code=code, tariff_id="monthly"), metadata=b.metadata()
        )
        for b in buyers
    ]
    await sweeping_loyalty.promo.ConfirmPurchase(
        promo_pb2.ConfirmPurchaseRequest(purchase_id=made[0].purchase_id),
        metadata=auth_server.service_token("purchases:settle").metadata(),
    )
    report_request = promo_pb2.GetPromoCodeReportRequest(code=code)
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        report = await sweeping_loyalty.admin.GetPromoCodeReport(
            report_request, metadata=admin.metadata()
        )
        if report.purchases_by_status.get("EXPIRED") == 1:
            break
        assert asyncio.get_running_loop().time() < deadline, dict(report.purchases_by_status)
        await asyncio.sleep(0.1)
    assert dict(report.purchases_by_status) == {"COMPLETED": 1, "EXPIRED": 1}
    assert (report.uses_taken, report.uses_left) == (1, 1)
    cancel = sweeping_loyalty.promo.CancelPromoCodeUse(
        promo_pb2.CancelPromoCodeUseRequest(purchase_id=made[1].purchase_id),
        metadata=buyers[1].metadata(),
    )

    assert (
        await reason_of(cancel, grpc.StatusCode.FAILED_PRECONDITION) == "PURCHASE_NOT_CANCELLABLE"
    )
    # The user may use the code again now that the use came back.
    again = await sweeping_loyalty.promo.UsePromoCode(
        promo_pb2.UsePromoCodeRequest(code=code, tariff_id="monthly"), metadata=buyers[1].metadata()
    )
    assert again.status == promo_pb2.PURCHASE_STATUS_PENDING
