"""Loyalty's use cases (Promotions: apply, use, confirm, cancel, expire; PromoAdmin: codes,
groups, bulk apply) over the in-memory unit of work. The SQL behind each repository is proven
by tests/integration; here it is the orchestration: what is checked, written, refused,
recorded and given back, and that a refused transaction leaves nothing behind."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from common.access.access_tokens import Identity, Principal, ServicePrincipal
from common.access.throttle import Limit
from common.errors import ServiceError
from common.user_status import UserStatus
from loyalty_service.domain.purchases import Purchase, PurchaseStatus
from loyalty_service.domain.reasons import Reason, Rejection
from loyalty_service.domain.specs import CodeSpec
from loyalty_service.use_cases.administration import PromoAdmin
from loyalty_service.use_cases.guessing import Guesser, GuessLimits, GuessThrottle
from loyalty_service.use_cases.promotions import Promotions
from loyalty_service.use_cases.referrals import Referrals
from tests.unit.fakes.loyalty import FakeLoyaltyStore

ANN, BO, CY = (str(uuid.uuid4()) for _ in range(3))


class World:
    def __init__(self) -> None:
        self.store = FakeLoyaltyStore()
        self.promotions = Promotions(self.store, Referrals(self.store))
        self.admin = PromoAdmin(self.store, self.promotions)

    async def code(self, text: str = "SPRING10", **spec: object) -> str:
        values: dict[str, object] = {"code": text, "percent_off": 10, "all_users": True}
        return await self.admin.add(CodeSpec(**(values | spec)))  # type: ignore[arg-type]

    def uses(self, text: str) -> int:
        return self.store.state.codes[text].uses

    def reasons(self) -> list[str]:
        return [r.reason for r in self.store.state.rejections]


def caller(user_id: str) -> Principal:
    return Principal(user_id, "user", "session", "token", 0)


def settler(scopes: frozenset[str] = frozenset({"purchases:settle"})) -> ServicePrincipal:
    """A service account's principal: no role, its scopes only."""
    return ServicePrincipal("billing", scopes, "service:billing", "token", 0)


def admin() -> Principal:
    return Principal(str(uuid.uuid4()), "admin", "session", "token", 0)


@pytest.fixture
def world() -> World:
    return World()


async def test_apply_quotes_without_taking_a_use(world: World) -> None:
    code = await world.code(max_uses=1)
    quote = await world.promotions.quote(ANN, code, "monthly")
    assert (quote.price.base, quote.price.discount, quote.price.final) == (29900, 2990, 26910)
    assert world.uses(code) == 0


async def test_use_takes_a_use_and_the_last_one_refuses_and_records_why(world: World) -> None:
    code = await world.code(max_uses=1)
    purchase = await world.promotions.redeem(ANN, code, "monthly", None)
    assert (purchase.status, purchase.final) == (PurchaseStatus.PENDING, 26910)
    with pytest.raises(Rejection) as refused:
        await world.promotions.redeem(BO, code, "monthly", None)
    assert refused.value.reason_code is Reason.PROMO_CODE_EXHAUSTED
    assert world.uses(code) == 1
    assert world.reasons() == ["PROMO_CODE_EXHAUSTED"]
    assert [p.user_id for p in world.store.state.purchases.values()] == [ANN]


async def test_a_repeated_request_id_returns_the_first_purchase(world: World) -> None:
    code = await world.code(max_uses=5, per_user_limit=0)
    first = await world.promotions.redeem(ANN, code, "monthly", "req-1")
    again = await world.promotions.redeem(ANN, code, "monthly", "req-1")
    assert again.purchase_id == first.purchase_id
    assert world.uses(code) == 1


async def test_the_per_user_limit_rolls_the_whole_use_back(world: World) -> None:
    code = await world.code(max_uses=5, per_user_limit=1)
    await world.promotions.redeem(ANN, code, "monthly", None)
    with pytest.raises(Rejection) as refused:
        await world.promotions.redeem(ANN, code, "monthly", None)
    assert refused.value.reason_code is Reason.PROMO_CODE_USER_LIMIT_REACHED
    # The rejected transaction left neither a purchase nor a taken use behind.
    assert world.uses(code) == 1
    assert len(world.store.state.purchases) == 1


async def test_cancel_gives_the_use_back_once_and_reports_it(world: World) -> None:
    code = await world.code(max_uses=1)
    purchase = await world.promotions.redeem(ANN, code, "monthly", None)
    cancelled = await world.promotions.cancel(caller(ANN), purchase.purchase_id)
    again = await world.promotions.cancel(caller(ANN), purchase.purchase_id)
    assert cancelled.status is again.status is PurchaseStatus.CANCELLED
    assert world.uses(code) == 0
    assert world.store.state.user_uses[(code, ANN)] == 0
    assert world.store.state.outbox == ["purchase.cancelled"]
    with pytest.raises(Rejection) as refused:
        await world.promotions.confirm(settler(), purchase.purchase_id)
    assert refused.value.reason_code is Reason.PURCHASE_NOT_CONFIRMABLE


async def test_confirm_keeps_the_use_and_a_stranger_sees_no_purchase(world: World) -> None:
    code = await world.code(max_uses=1)
    purchase = await world.promotions.redeem(ANN, code, "monthly", None)
    with pytest.raises(Rejection) as hidden:
        await world.promotions.cancel(caller(BO), purchase.purchase_id)
    assert hidden.value.reason_code is Reason.PURCHASE_NOT_FOUND
    confirmed = await world.promotions.confirm(settler(), purchase.purchase_id)
    assert confirmed.status is PurchaseStatus.COMPLETED
    with pytest.raises(Rejection) as final:
        await world.promotions.cancel(caller(ANN), purchase.purchase_id)
    assert final.value.reason_code is Reason.PURCHASE_NOT_CANCELLABLE
    assert world.uses(code) == 1
    assert world.store.state.outbox == ["purchase.completed"]


async def test_only_settlers_and_admins_confirm_or_refund_and_the_check_comes_first(
    world: World,
) -> None:
    code = await world.code(max_uses=1)
    purchase = await world.promotions.redeem(ANN, code, "monthly", None)
    missing = str(uuid.uuid4())
    # The owner, a stranger and a service without the scope: refused, existing or not.
    for who in (caller(ANN), caller(BO), settler(frozenset({"client-address:forward"}))):
        for purchase_id in (purchase.purchase_id, missing):
            for settle in (world.promotions.confirm, _refund(world)):
                with pytest.raises(Rejection) as refused:
                    await settle(who, purchase_id)
                assert refused.value.reason_code is Reason.PURCHASE_SETTLEMENT_FORBIDDEN
                assert refused.value.kind.value == "PERMISSION_DENIED"
    with pytest.raises(Rejection) as unknown:
        await world.promotions.confirm(settler(), missing)
    assert unknown.value.reason_code is Reason.PURCHASE_NOT_FOUND
    assert (await world.promotions.confirm(admin(), purchase.purchase_id)).status.value == (
        "COMPLETED"
    )


def _refund(world: World) -> Callable[[Identity, str], Awaitable[Purchase]]:
    async def refund(who: Identity, purchase_id: str) -> Purchase:
        return await world.promotions.refund(who, purchase_id, "chargeback")

    return refund


async def test_a_service_owns_no_purchase_but_a_settler_cancels_any(world: World) -> None:
    code = await world.code(max_uses=2, per_user_limit=0)
    first = await world.promotions.redeem(ANN, code, "monthly", None)
    second = await world.promotions.redeem(ANN, code, "monthly", None)
    with pytest.raises(Rejection) as hidden:
        await world.promotions.cancel(settler(frozenset()), first.purchase_id)
    assert hidden.value.reason_code is Reason.PURCHASE_NOT_FOUND
    assert (await world.promotions.cancel(settler(), first.purchase_id)).status.value == (
        "CANCELLED"
    )
    assert (await world.promotions.cancel(admin(), second.purchase_id)).status.value == (
        "CANCELLED"
    )
    assert world.uses(code) == 0


async def test_refund_gives_the_use_back_once_and_refuses_other_states(world: World) -> None:
    code = await world.code(max_uses=1)
    purchase = await world.promotions.redeem(ANN, code, "monthly", None)
    with pytest.raises(Rejection) as pending:
        await world.promotions.refund(settler(), purchase.purchase_id, "")
    assert pending.value.reason_code is Reason.PURCHASE_NOT_REFUNDABLE
    await world.promotions.confirm(settler(), purchase.purchase_id)
    refunded = await world.promotions.refund(settler(), purchase.purchase_id, "chargeback")
    again = await world.promotions.refund(settler(), purchase.purchase_id, "again")
    assert refunded.status is again.status is PurchaseStatus.REFUNDED
    assert world.uses(code) == 0
    assert world.store.state.user_uses[(code, ANN)] == 0
    assert world.store.state.outbox == ["purchase.completed", "purchase.refunded"]
    with pytest.raises(Rejection) as final:
        await world.promotions.cancel(caller(ANN), purchase.purchase_id)
    assert final.value.reason_code is Reason.PURCHASE_NOT_CANCELLABLE


async def test_a_code_that_keeps_its_use_on_refund_keeps_it(world: World) -> None:
    code = await world.code(max_uses=1, refund_returns_use=False)
    purchase = await world.promotions.redeem(ANN, code, "monthly", None)
    await world.promotions.confirm(admin(), purchase.purchase_id)
    await world.promotions.refund(admin(), purchase.purchase_id, "fraud")
    assert world.uses(code) == 1
    with pytest.raises(Rejection) as exhausted:
        await world.promotions.redeem(BO, code, "monthly", None)
    assert exhausted.value.reason_code is Reason.PROMO_CODE_EXHAUSTED


async def test_blocked_users_and_unknown_codes_are_refused_and_recorded(world: World) -> None:
    code = await world.code()
    world.store.state.users[BO] = UserStatus.BLOCKED
    for user, text, reason in (
        (BO, code, Reason.USER_BLOCKED),
        (ANN, "NOSUCHCODE", Reason.PROMO_CODE_NOT_FOUND),
    ):
        with pytest.raises(Rejection) as refused:
            await world.promotions.quote(user, text, "monthly")
        assert refused.value.reason_code is reason
    assert world.reasons() == ["USER_BLOCKED", "PROMO_CODE_NOT_FOUND"]
    assert await world.promotions.active_codes(BO, None, 10) == []
    assert [a.code.code for a in await world.promotions.active_codes(ANN, None, 10)] == [code]


async def test_expiry_gives_stale_uses_back(world: World) -> None:
    code = await world.code(max_uses=2)
    await world.promotions.redeem(ANN, code, "monthly", None)
    expired = await world.promotions.expire_stale(datetime.now(UTC) + timedelta(seconds=1))
    assert expired == 1
    assert world.uses(code) == 0
    (purchase,) = world.store.state.purchases.values()
    assert purchase.status is PurchaseStatus.EXPIRED
    assert world.store.state.outbox == ["purchase.expired"]


async def test_admin_codes_are_unique_and_deactivation_stops_them(world: World) -> None:
    code = await world.code()
    with pytest.raises(Rejection) as taken:
        await world.code()
    assert taken.value.reason_code is Reason.PROMO_CODE_EXISTS
    deactivated = await world.admin.deactivate(code.lower())
    assert deactivated.deactivated
    assert [c.code for c in await world.admin.list_codes(None, 10, "", "DEACTIVATED")] == [code]
    with pytest.raises(Rejection) as inactive:
        await world.promotions.quote(ANN, code, "monthly")
    assert inactive.value.reason_code is Reason.PROMO_CODE_INACTIVE


async def test_bulk_apply_reaches_group_members_with_partial_success(world: World) -> None:
    code = await world.code(max_uses=2, all_users=False)
    group = await world.admin.create_group("Early birds")
    with pytest.raises(Rejection) as twice:
        await world.admin.create_group("early BIRDS")
    assert twice.value.reason_code is Reason.GROUP_EXISTS
    grown = await world.admin.change_members(group.group_id, [ANN, BO, CY], add=True)
    assert grown.member_count == 3
    await world.admin.assign(code, [], [group.group_id])
    results = await world.admin.apply_for(code, "monthly", [], [group.group_id])
    assert [r.reason for r in results] == ["", "", "PROMO_CODE_EXHAUSTED"]
    assert sum(r.purchase is not None for r in results) == world.uses(code) == 2
    report = await world.admin.report(code)
    assert report.purchases_by_status == {"PENDING": 2}
    assert report.rejections_by_reason == {"PROMO_CODE_EXHAUSTED": 1}


def _one_guess() -> GuessThrottle:
    """One guess per user (and per address) and no refill within a test."""
    limits = GuessLimits(Limit(1, 3600), Limit(1000, 3600))
    return GuessThrottle(limits)


async def test_a_miss_spends_a_guess_and_a_hit_spends_none(world: World) -> None:
    code = await world.code(per_user_limit=0)
    throttled = Promotions(world.store, Referrals(world.store), _one_guess())
    guesser = Guesser(ANN, "10.0.0.1")
    for _ in range(3):  # hits: never refused
        await throttled.quote(ANN, code, "monthly", guesser)
    with pytest.raises(Rejection) as missed:
        await throttled.quote(ANN, "NOSUCHCODE", "monthly", guesser)
    assert missed.value.reason_code is Reason.PROMO_CODE_NOT_FOUND
    with pytest.raises(ServiceError) as refused:  # out of guesses: refused before the look-up
        await throttled.quote(ANN, code, "monthly", guesser)
    assert refused.value.reason == Reason.TOO_MANY_PROMO_ATTEMPTS.value
    assert refused.value.retry_after == 60
    assert world.reasons() == ["PROMO_CODE_NOT_FOUND"]  # the refusal recorded nothing
    await throttled.quote(BO, code, "monthly", Guesser(BO, "10.0.0.1"))  # another user's own


async def test_a_throttled_caller_still_gets_the_purchase_its_request_id_made(
    world: World,
) -> None:
    code = await world.code(per_user_limit=0)
    throttled = Promotions(world.store, Referrals(world.store), _one_guess())
    guesser = Guesser(ANN, "10.0.0.1")
    made = await throttled.redeem(ANN, code, "monthly", "pay-1", guesser)
    with pytest.raises(Rejection):
        await throttled.redeem(ANN, "NOSUCHCODE", "monthly", "pay-x", guesser)
    again = await throttled.redeem(ANN, code, "monthly", "pay-1", guesser)
    assert again == made
    with pytest.raises(ServiceError) as refused:
        await throttled.redeem(ANN, code, "monthly", "pay-2", guesser)
    assert refused.value.reason == Reason.TOO_MANY_PROMO_ATTEMPTS.value
    assert world.uses(code) == 1 and world.reasons() == ["PROMO_CODE_NOT_FOUND"]
