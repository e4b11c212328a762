"""Settlement belongs to the payment side (issue 23): who may confirm, refund and cancel;
refunds exactly once under real concurrent calls; the farm that confirmed its own purchases;
the billing story over HTTP."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import httpx

from protogen.loyalty.promo.v1 import promo_pb2
from tests.fixtures.auth import AuthTestServer, TestUser
from tests.fixtures.loyalty import LoyaltyTestServer
from tests.grpc_helpers import reason_of, rejected
from tests.integration.test_loyalty_promo import new_code
from tests.referral_helpers import code_of, set_program, use

Code = grpc.StatusCode
FORBIDDEN = "PURCHASE_SETTLEMENT_FORBIDDEN"


def _confirm(loyalty: LoyaltyTestServer, who: TestUser, purchase_id: str) -> Any:
    ask = promo_pb2.ConfirmPurchaseRequest(purchase_id=purchase_id)
    return loyalty.promo.ConfirmPurchase(ask, metadata=who.metadata())


def _refund(loyalty: LoyaltyTestServer, who: TestUser, purchase_id: str, reason: str = "") -> Any:
    ask = promo_pb2.RefundPurchaseRequest(purchase_id=purchase_id, reason=reason)
    return loyalty.promo.RefundPurchase(ask, metadata=who.metadata())


def _cancel(loyalty: LoyaltyTestServer, who: TestUser, purchase_id: str) -> Any:
    ask = promo_pb2.CancelPromoCodeUseRequest(purchase_id=purchase_id)
    return loyalty.promo.CancelPromoCodeUse(ask, metadata=who.metadata())


async def _buy(loyalty: LoyaltyTestServer, user: TestUser, code: str) -> promo_pb2.Purchase:
    purchase: promo_pb2.Purchase = await loyalty.promo.UsePromoCode(
        promo_pb2.UsePromoCodeRequest(code=code, tariff_id="monthly"), metadata=user.metadata()
    )
    return purchase


async def _ledger(loyalty: LoyaltyTestServer, code: str) -> tuple[int, int, int]:
    """(uses taken, the user counters' sum, budget spent) of a code, read in SQL."""
    row = await loyalty.app.pool.fetchrow(
        "SELECT promo_code_uses($1) AS taken,"
        " (SELECT coalesce(sum(uses), 0) FROM user_code_uses WHERE code = $1) AS held,"
        " (SELECT budget_spent_minor FROM promo_codes WHERE code = $1) AS spent",
        code,
    )
    return row["taken"], row["held"], row["spent"]


async def test_only_settlers_and_admins_confirm_or_refund(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    code = new_code()
    await loyalty_server.create_code(admin, code=code, percent_off=10, per_user_limit=0)
    owner, stranger = auth_server.token_for(), auth_server.token_for()
    wrong_scope = auth_server.service_token("client-address:forward")
    settler = auth_server.service_token("purchases:settle")
    purchase = await _buy(loyalty_server, owner, code)
    unknown = str(uuid.uuid4())
    # Refused first, whether the purchase exists or not: nothing is learnt about it.
    for who in (owner, stranger, wrong_scope):
        for purchase_id in (purchase.purchase_id, unknown):
            for settle in (_confirm, _refund):
                call = settle(loyalty_server, who, purchase_id)
                assert await reason_of(call, Code.PERMISSION_DENIED) == FORBIDDEN
    assert await reason_of(_confirm(loyalty_server, settler, unknown), Code.NOT_FOUND) == (
        "PURCHASE_NOT_FOUND"
    )
    done = await _confirm(loyalty_server, settler, purchase.purchase_id)
    assert done.status == promo_pb2.PURCHASE_STATUS_COMPLETED
    refunded = await _refund(loyalty_server, admin, purchase.purchase_id, "admin refund")
    assert refunded.status == promo_pb2.PURCHASE_STATUS_REFUNDED
    # A service owns no purchase: its "my" methods are refused, not answered with nothing.
    mine = loyalty_server.promo.ListMyPurchases(
        promo_pb2.ListMyPurchasesRequest(), metadata=settler.metadata()
    )
    await reason_of(mine, Code.PERMISSION_DENIED)


async def test_refund_states_and_the_codes_setting(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    settler = auth_server.service_token("purchases:settle")
    keeps = new_code()
    made = await loyalty_server.create_code(
        admin, code=keeps, percent_off=50, max_uses=1, refund_returns_use=False
    )
    assert made.spec.refund_returns_use is False
    user = auth_server.token_for()
    purchase = await _buy(loyalty_server, user, keeps)
    pending = _refund(loyalty_server, settler, purchase.purchase_id)
    error = await reason_of(pending, Code.FAILED_PRECONDITION)
    assert error == "PURCHASE_NOT_REFUNDABLE"
    await _confirm(loyalty_server, settler, purchase.purchase_id)
    await _refund(loyalty_server, settler, purchase.purchase_id, "fraud")
    assert await _ledger(loyalty_server, keeps) == (1, 1, 0)  # the use stays taken
    reason = await loyalty_server.app.pool.fetchval(
        "SELECT refund_reason FROM purchases WHERE purchase_id = $1", purchase.purchase_id
    )
    assert reason == "fraud"
    # A cancelled purchase is not refundable either.
    other = new_code()
    await loyalty_server.create_code(admin, code=other, percent_off=10)
    gone = await _buy(loyalty_server, user, other)
    await _cancel(loyalty_server, user, gone.purchase_id)
    call = _refund(loyalty_server, settler, gone.purchase_id)
    assert await reason_of(call, Code.FAILED_PRECONDITION) == "PURCHASE_NOT_REFUNDABLE"
    bad = _refund(loyalty_server, settler, gone.purchase_id, "x" * 501)
    await rejected(bad, Code.INVALID_ARGUMENT)


async def test_100_concurrent_refunds_give_the_use_and_budget_back_once(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    code = new_code()
    await loyalty_server.create_code(
        admin,
        code=code,
        percent_off=50,
        max_uses=5,
        per_user_limit=0,
        budget=promo_pb2.Money(amount_minor=10**7, currency="RUB"),
    )
    settler, user = auth_server.service_token("purchases:settle"), auth_server.token_for()
    purchase = await _buy(loyalty_server, user, code)
    await _confirm(loyalty_server, settler, purchase.purchase_id)
    assert await _ledger(loyalty_server, code) == (1, 1, 14950)
    answers = await asyncio.gather(
        *(_refund(loyalty_server, settler, purchase.purchase_id, f"r{n}") for n in range(100))
    )
    assert {a.status for a in answers} == {promo_pb2.PURCHASE_STATUS_REFUNDED}
    assert await _ledger(loyalty_server, code) == (0, 0, 0)
    events = await loyalty_server.app.pool.fetchval(
        "SELECT count(*) FROM outbox WHERE routing_key = 'purchase.refunded'"
        " AND payload LIKE '%' || $1::text::bytea || '%'",
        purchase.purchase_id,
    )
    assert events == 1


async def test_refund_racing_cancel_and_confirm_keeps_the_counters_exact(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    """For 30 purchases each: confirm, refund and the owner's cancel at once. Whatever order
    they run in, a purchase ends COMPLETED (kept), REFUNDED or CANCELLED (given back once),
    and the counters equal the live purchases."""
    code = new_code()
    await loyalty_server.create_code(admin, code=code, percent_off=50, per_user_limit=0)
    settler = auth_server.service_token("purchases:settle")
    users = [auth_server.token_for() for _ in range(30)]
    bought = [await _buy(loyalty_server, u, code) for u in users]
    await asyncio.gather(
        *(
            call
            for u, p in zip(users, bought, strict=True)
            for call in (
                _confirm(loyalty_server, settler, p.purchase_id),
                _refund(loyalty_server, settler, p.purchase_id, "race"),
                _cancel(loyalty_server, u, p.purchase_id),
            )
        ),
        return_exceptions=True,
    )
    statuses = await loyalty_server.app.pool.fetch(
        "SELECT status, count(*) AS n FROM purchases WHERE code = $1 GROUP BY status", code
    )
    counted = {r["status"]: r["n"] for r in statuses}
    assert sum(counted.values()) == 30 and set(counted) <= {"COMPLETED", "REFUNDED", "CANCELLED"}
    live = counted.get("COMPLETED", 0)
    taken, held, _ = await _ledger(loyalty_server, code)
    assert taken == held == live


async def test_the_farm_cannot_confirm_its_own_purchases(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    """Twenty new users, each from its own address (referral_helpers.use passes each user's
    own, as a trusted gateway does), buy with one referrer's code and confirm their own
    purchases: every confirm is refused, no reward exists, and the referrer's report shows
    none. Before settlement was the payment side's, the same twenty confirms earned the
    referrer twenty rewards."""
    await set_program(loyalty_server.admin, admin, reward_hold_seconds=0)
    referrer = auth_server.token_for()
    code = await code_of(loyalty_server.promo, referrer)
    farm = [auth_server.token_for() for _ in range(20)]
    reasons = []
    for n, fake in enumerate(farm):
        purchase = await use(loyalty_server.promo, fake, code, request_id=f"farm-{n}")
        call = _confirm(loyalty_server, fake, purchase.purchase_id)
        reasons.append(await reason_of(call, Code.PERMISSION_DENIED))
    assert reasons == [FORBIDDEN] * 20
    rewards = await loyalty_server.app.pool.fetchval(
        "SELECT count(*) FROM referral_rewards WHERE referrer_id = $1", referrer.user_id
    )
    assert rewards == 0
    mine = await loyalty_server.promo.GetMyReferralCode(
        promo_pb2.GetMyReferralCodeRequest(), metadata=referrer.metadata()
    )
    assert (mine.rewards_issued, mine.rewards_pending) == (0, 0)
    report = await loyalty_server.admin.GetReferralReport(
        promo_pb2.GetReferralReportRequest(), metadata=admin.metadata()
    )
    top = {t.user_id: t for t in report.top_referrers}
    # Referred (twenty pending purchases) but rewarded nothing, and none completed.
    assert referrer.user_id not in top or top[referrer.user_id].rewards_issued == 0
    completed = await loyalty_server.app.pool.fetchval(
        "SELECT count(*) FROM referrals WHERE referrer_id = $1 AND status = 'COMPLETED'",
        referrer.user_id,
    )
    assert completed == 0
    # Switch the program off again for the other tests' sake.
    await set_program(loyalty_server.admin, admin, enabled=False)


def _bearer(user: TestUser) -> dict[str, str]:
    return {"authorization": f"Bearer {user.access_token}"}


def _reason(response: httpx.Response) -> str:
    reason: str = response.json()["details"][0]["reason"]
    return reason


async def test_the_billing_story_over_http(
    http: httpx.AsyncClient,
    loyalty_server: LoyaltyTestServer,
    admin: TestUser,
    auth_server: AuthTestServer,
) -> None:
    """Billing (a settler's token) confirms and refunds; the buyer cancels a PENDING purchase
    but not a COMPLETED one, and cannot confirm."""
    code = new_code()
    await loyalty_server.create_code(admin, code=code, percent_off=10, per_user_limit=0)
    billing, buyer = _bearer(auth_server.service_token("purchases:settle")), auth_server.token_for()
    use_body = {"code": code, "tariffId": "monthly"}
    paid = (await http.post("/v1/promocodes/use", json=use_body, headers=_bearer(buyer))).json()
    own = await http.post(f"/v1/purchases/{paid['purchaseId']}/confirm", headers=_bearer(buyer))
    assert (own.status_code, _reason(own)) == (403, FORBIDDEN)
    done = await http.post(f"/v1/purchases/{paid['purchaseId']}/confirm", headers=billing)
    assert done.json()["status"] == "PURCHASE_STATUS_COMPLETED"
    late = await http.post(f"/v1/purchases/{paid['purchaseId']}/cancel", headers=_bearer(buyer))
    assert (late.status_code, _reason(late)) == (400, "PURCHASE_NOT_CANCELLABLE")
    refund = f"/v1/purchases/{paid['purchaseId']}/refund"
    back = await http.post(refund, json={"reason": "customer asked"}, headers=billing)
    assert back.status_code == 200, back.text
    assert back.json()["status"] == "PURCHASE_STATUS_REFUNDED"
    again = await http.post(refund, json={"reason": "again"}, headers=billing)
    assert again.json()["status"] == "PURCHASE_STATUS_REFUNDED"
    by_buyer = await http.post(refund, json={}, headers=_bearer(buyer))
    assert (by_buyer.status_code, _reason(by_buyer)) == (403, FORBIDDEN)
    abandoned = (
        await http.post("/v1/promocodes/use", json=use_body, headers=_bearer(buyer))
    ).json()
    gone = await http.post(
        f"/v1/purchases/{abandoned['purchaseId']}/cancel", headers=_bearer(buyer)
    )
    assert gone.json()["status"] == "PURCHASE_STATUS_CANCELLED"
    missing = await http.post(f"/v1/purchases/{uuid.uuid4()}/refund", json={}, headers=billing)
    assert (missing.status_code, _reason(missing)) == (404, "PURCHASE_NOT_FOUND")
    malformed = await http.post(refund, json={"reason": 5}, headers=billing)
    assert malformed.status_code == 400
