"""The referral program over gRPC against real Postgres: the story, every refusal, and exactly
one reward per referred purchase when calls race."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from loyalty_service.domain.codes import DEFAULT_RANDOM_LENGTH
from protogen.loyalty.promo.v1 import promo_pb2
from tests.fixtures.auth import AuthTestServer, TestUser
from tests.fixtures.loyalty import LoyaltyTestServer
from tests.fixtures.sync import eventually
from tests.grpc_helpers import bad_request_fields, reason_of
from tests.integration.test_loyalty_promo import new_code
from tests.referral_helpers import (
    code_of,
    confirm,
    issued_codes,
    money,
    outcomes,
    reward_codes,
    set_program,
    use,
)

Code = grpc.StatusCode


@pytest.fixture
async def on(loyalty_server: LoyaltyTestServer, admin: TestUser) -> LoyaltyTestServer:
    """The program on: referee 20% off, reward 50% off for 30 days, no cap."""
    await set_program(loyalty_server.admin, admin)
    return loyalty_server


async def _report(loyalty: LoyaltyTestServer, admin: TestUser) -> promo_pb2.ReferralReport:
    report: promo_pb2.ReferralReport = await loyalty.admin.GetReferralReport(
        promo_pb2.GetReferralReportRequest(), metadata=admin.metadata()
    )
    return report


async def _rejections(loyalty: LoyaltyTestServer, admin: TestUser, code: str) -> list[str]:
    page = await loyalty.admin.ListRejections(
        promo_pb2.ListRejectionsRequest(code=code), metadata=admin.metadata()
    )
    return [r.reason for r in page.rejections]


async def test_the_whole_story(
    settler: TestUser, on: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    alice, bob = await auth_server.new_user(), await auth_server.new_user()
    before = await _report(on, admin)
    code = await code_of(on.promo, alice)
    assert await code_of(on.promo, alice) == code  # stable
    assert len(code) == DEFAULT_RANDOM_LENGTH  # generated like other codes
    own = on.promo.ApplyPromoCode(
        promo_pb2.ApplyPromoCodeRequest(code=code, tariff_id="monthly"), metadata=alice.metadata()
    )
    assert await reason_of(own, Code.FAILED_PRECONDITION) == "REFERRAL_SELF_USE"
    assert await _rejections(on, admin, code) == ["REFERRAL_SELF_USE"]

    quote = await on.promo.ApplyPromoCode(
        promo_pb2.ApplyPromoCodeRequest(code=code.lower(), tariff_id="monthly"),
        metadata=bob.metadata(),
    )
    assert (quote.base_price, quote.final_price) == (money(29900), money(23920))
    purchase = await use(on.promo, bob, code)
    assert purchase.final_price == money(23920)
    assert purchase.status == promo_pb2.PURCHASE_STATUS_PENDING
    done = await confirm(on.promo, admin, purchase.purchase_id)
    assert done.status == promo_pb2.PURCHASE_STATUS_COMPLETED

    async def rewarded() -> bool:
        return len(await reward_codes(on.promo, alice)) == 1

    await eventually(rewarded, 1.0, "Alice sees her reward code")
    (reward,) = await reward_codes(on.promo, alice)
    assert reward.percent_off == 50 and reward.uses_left_for_user == 1
    expires = reward.ends_at.ToDatetime(UTC)
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)
    assert await reward_codes(on.promo, bob) == []  # targeted at Alice alone
    reward_quote = await on.promo.ApplyPromoCode(
        promo_pb2.ApplyPromoCodeRequest(code=reward.code, tariff_id="monthly"),
        metadata=alice.metadata(),
    )
    assert reward_quote.final_price == money(14950)
    assert (await use(on.promo, alice, reward.code)).final_price == money(14950)
    assert await reward_codes(on.promo, alice) == []  # one-time

    mine = await on.promo.GetMyReferralCode(
        promo_pb2.GetMyReferralCodeRequest(), metadata=alice.metadata()
    )
    assert (mine.code, mine.referred_count, mine.rewards_issued) == (code, 1, 1)
    after = await _report(on, admin)
    assert after.referrals_started - before.referrals_started == 1
    assert after.referrals_completed - before.referrals_completed == 1
    assert after.rewards_issued - before.rewards_issued == 1
    assert after.rejections_by_reason["REFERRAL_SELF_USE"] >= 1
    tops = {t.user_id: t for t in after.top_referrers}
    assert alice.user_id not in tops or tops[alice.user_id].code == code


async def test_50_concurrent_confirms_give_one_reward(
    on: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    alice, bob = auth_server.token_for(), auth_server.token_for()
    purchase = await use(on.promo, bob, await code_of(on.promo, alice))
    confirms = await asyncio.gather(
        *(confirm(on.promo, admin, purchase.purchase_id) for _ in range(50))
    )
    assert {c.status for c in confirms} == {promo_pb2.PURCHASE_STATUS_COMPLETED}
    assert await outcomes(on.app.pool, alice.user_id) == {"ISSUED": 1}
    assert await issued_codes(on.app.pool, alice.user_id) == 1
    assert len(await reward_codes(on.promo, alice)) == 1


async def test_30_referees_racing_with_a_cap_of_5_give_5_rewards(
    settler: TestUser,
    loyalty_server: LoyaltyTestServer,
    admin: TestUser,
    auth_server: AuthTestServer,
) -> None:
    await set_program(loyalty_server.admin, admin, max_rewards_per_referrer=5)
    promo, alice = loyalty_server.promo, auth_server.token_for()
    code = await code_of(promo, alice)
    referees = [auth_server.token_for() for _ in range(30)]
    purchases = await asyncio.gather(*(use(promo, r, code) for r in referees))
    await asyncio.gather(*(confirm(promo, admin, p.purchase_id) for p in purchases))
    found = await outcomes(loyalty_server.app.pool, alice.user_id)
    assert found == {"ISSUED": 5, "REFERRAL_REWARD_CAP_REACHED": 25}
    assert await issued_codes(loyalty_server.app.pool, alice.user_id) == 5
    mine = await promo.GetMyReferralCode(
        promo_pb2.GetMyReferralCodeRequest(), metadata=alice.metadata()
    )
    assert (mine.referred_count, mine.rewards_issued) == (30, 5)


async def test_one_user_racing_two_referral_codes_is_referred_once(
    on: LoyaltyTestServer, auth_server: AuthTestServer
) -> None:
    alice, carol, dave = (auth_server.token_for() for _ in range(3))
    codes = [await code_of(on.promo, alice), await code_of(on.promo, carol)]
    calls = [use(on.promo, dave, codes[i % 2], f"r{i}") for i in range(40)]
    results: list[Any] = await asyncio.gather(*calls, return_exceptions=True)
    made = [r for r in results if isinstance(r, promo_pb2.Purchase)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(made) == 1 and len(refused) == 39
    assert {r.code() for r in refused} == {Code.FAILED_PRECONDITION}
    live = await on.app.pool.fetchval(
        "SELECT count(*) FROM referrals WHERE referee_id = $1 AND status = 'PENDING'",
        dave.user_id,
    )
    assert live == 1


async def test_not_first_purchase(
    on: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    alice, bob = auth_server.token_for(), auth_server.token_for()
    ordinary = new_code()
    await on.create_code(admin, code=ordinary, percent_off=10)
    await use(on.promo, bob, ordinary)
    refused = use(on.promo, bob, await code_of(on.promo, alice))
    assert await reason_of(refused, Code.FAILED_PRECONDITION) == "REFERRAL_NOT_FIRST_PURCHASE"


async def test_already_referred_then_cancel_gives_the_referral_back(
    settler: TestUser, on: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    alice, carol, bob = (auth_server.token_for() for _ in range(3))
    alices, carols = await code_of(on.promo, alice), await code_of(on.promo, carol)
    first = await use(on.promo, bob, alices)
    refused = use(on.promo, bob, carols)
    assert await reason_of(refused, Code.FAILED_PRECONDITION) == "REFERRAL_ALREADY_REFERRED"
    assert await _rejections(on, admin, carols) == ["REFERRAL_ALREADY_REFERRED"]
    await on.promo.CancelPromoCodeUse(
        promo_pb2.CancelPromoCodeUseRequest(purchase_id=first.purchase_id),
        metadata=bob.metadata(),
    )
    again = await use(on.promo, bob, carols)
    await confirm(on.promo, admin, again.purchase_id)
    assert await outcomes(on.app.pool, carol.user_id) == {"ISSUED": 1}
    assert await outcomes(on.app.pool, alice.user_id) == {}
    report = await _report(on, admin)
    assert report.referrals_given_back >= 1


async def test_expiry_gives_the_referral_back_and_issues_nothing(
    on: LoyaltyTestServer, auth_server: AuthTestServer
) -> None:
    alice, bob = auth_server.token_for(), auth_server.token_for()
    code = await code_of(on.promo, alice)
    stale = await use(on.promo, bob, code)
    await on.app.pool.execute(
        "UPDATE purchases SET created_at = now() - interval '1 day' WHERE purchase_id = $1",
        stale.purchase_id,
    )
    await on.app.promotions.expire_stale(datetime.now(UTC) - timedelta(hours=1))
    status = await on.app.pool.fetchval(
        "SELECT status FROM referrals WHERE purchase_id = $1", stale.purchase_id
    )
    assert status == "EXPIRED"
    again = await use(on.promo, bob, code)  # referred again, by the same code
    assert again.final_price == money(23920)
    assert await outcomes(on.app.pool, alice.user_id) == {}


async def test_program_off(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    alice, bob = auth_server.token_for(), auth_server.token_for()
    code = await code_of(loyalty_server.promo, alice)
    await set_program(loyalty_server.admin, admin, enabled=False)
    try:
        refused = use(loyalty_server.promo, bob, code)
        assert await reason_of(refused, Code.FAILED_PRECONDITION) == "REFERRAL_PROGRAM_OFF"
        assert await _rejections(loyalty_server, admin, code) == ["REFERRAL_PROGRAM_OFF"]
    finally:
        await set_program(loyalty_server.admin, admin)


async def test_blocked_referrer_gets_no_reward(
    settler: TestUser, on: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    alice, bob, deleted, carol = (auth_server.token_for() for _ in range(4))
    purchase = await use(on.promo, bob, await code_of(on.promo, alice))
    later = await use(on.promo, carol, await code_of(on.promo, deleted))
    await on.set_user_status(alice.user_id, "BLOCKED", 2)
    await on.set_user_status(deleted.user_id, "DELETED", 2)
    await confirm(on.promo, admin, purchase.purchase_id)
    await confirm(on.promo, admin, later.purchase_id)
    assert await outcomes(on.app.pool, alice.user_id) == {"REFERRER_BLOCKED": 1}
    assert await outcomes(on.app.pool, deleted.user_id) == {"REFERRER_DELETED": 1}
    assert await issued_codes(on.app.pool, alice.user_id) == 0
    report = await _report(on, admin)
    assert report.rewards_withheld_by_reason["REFERRER_BLOCKED"] >= 1
    assert report.rewards_withheld_by_reason["REFERRER_DELETED"] >= 1


async def test_cap_reached(
    settler: TestUser,
    loyalty_server: LoyaltyTestServer,
    admin: TestUser,
    auth_server: AuthTestServer,
) -> None:
    await set_program(loyalty_server.admin, admin, max_rewards_per_referrer=1)
    promo, alice = loyalty_server.promo, auth_server.token_for()
    code = await code_of(promo, alice)
    for _ in range(2):
        referee = auth_server.token_for()
        await confirm(promo, admin, (await use(promo, referee, code)).purchase_id)
    found = await outcomes(loyalty_server.app.pool, alice.user_id)
    assert found == {"ISSUED": 1, "REFERRAL_REWARD_CAP_REACHED": 1}
    report = await _report(loyalty_server, admin)
    assert report.rewards_withheld_by_reason["REFERRAL_REWARD_CAP_REACHED"] >= 1


async def test_a_program_change_affects_later_uses_and_rewards_only(
    settler: TestUser, on: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    alice, bob = auth_server.token_for(), auth_server.token_for()
    purchase = await use(on.promo, bob, await code_of(on.promo, alice))
    await set_program(
        on.admin, admin, referee=promo_pb2.Discount(amount_off=money(1000)), reward_valid_days=7
    )
    try:
        await confirm(on.promo, admin, purchase.purchase_id)
        stored = await on.app.pool.fetchval(
            "SELECT final_minor FROM purchases WHERE purchase_id = $1", purchase.purchase_id
        )
        assert stored == 23920  # the price taken at use stays
        (reward,) = await reward_codes(on.promo, alice)
        assert reward.ends_at.ToDatetime(UTC) - datetime.now(UTC) <= timedelta(days=7)
        carol = auth_server.token_for()
        later = await use(on.promo, carol, await code_of(on.promo, alice))
        assert later.final_price == money(28900)
    finally:
        await set_program(on.admin, admin)


@pytest.mark.parametrize(
    ("status", "reason"), [("BLOCKED", "USER_BLOCKED"), ("DELETED", "USER_DELETED")]
)
async def test_blocked_and_deleted_users_get_no_code(
    loyalty_server: LoyaltyTestServer, auth_server: AuthTestServer, status: str, reason: str
) -> None:
    user = auth_server.token_for()
    await loyalty_server.set_user_status(user.user_id, status, 2)
    call = loyalty_server.promo.GetMyReferralCode(
        promo_pb2.GetMyReferralCodeRequest(), metadata=user.metadata()
    )
    assert await reason_of(call, Code.PERMISSION_DENIED) == reason


async def test_concurrent_first_requests_make_one_code(
    loyalty_server: LoyaltyTestServer, auth_server: AuthTestServer
) -> None:
    user = auth_server.token_for()
    found = await asyncio.gather(*(code_of(loyalty_server.promo, user) for _ in range(20)))
    assert len(set(found)) == 1


async def test_program_is_admin_only_and_checked(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    user = auth_server.token_for()
    denied = loyalty_server.admin.GetReferralProgram(
        promo_pb2.GetReferralProgramRequest(), metadata=user.metadata()
    )
    assert (await reason_of(denied, Code.PERMISSION_DENIED)) == "PERMISSION_DENIED"
    bad = promo_pb2.ReferralProgram(
        enabled=True,
        referee=promo_pb2.Discount(percent_off=101),
        reward=promo_pb2.Discount(),
        reward_valid_days=0,
        max_rewards_per_referrer=-1,
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await loyalty_server.admin.SetReferralProgram(bad, metadata=admin.metadata())
    assert raised.value.code() == Code.INVALID_ARGUMENT
    assert bad_request_fields(raised.value) == {
        "referee.percent_off",
        "reward",
        "reward_valid_days",
        "max_rewards_per_referrer",
    }
    # The request rules check money fields before the program's own checks run.
    usd = promo_pb2.ReferralProgram(
        enabled=True,
        referee=promo_pb2.Discount(percent_off=10),
        reward=promo_pb2.Discount(amount_off=promo_pb2.Money(amount_minor=5, currency="USD")),
        reward_valid_days=30,
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await loyalty_server.admin.SetReferralProgram(usd, metadata=admin.metadata())
    assert raised.value.code() == Code.INVALID_ARGUMENT
    assert bad_request_fields(raised.value) <= {"reward", "reward.amount_off.currency"}
    empty = promo_pb2.ReferralProgram(reward_valid_days=30)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await loyalty_server.admin.SetReferralProgram(empty, metadata=admin.metadata())
    assert bad_request_fields(raised.value) == {"referee", "reward"}
    await set_program(loyalty_server.admin, admin, max_rewards_per_referrer=3)
    got = await loyalty_server.admin.GetReferralProgram(
        promo_pb2.GetReferralProgramRequest(), metadata=admin.metadata()
    )
    assert got.max_rewards_per_referrer == 3 and got.referee.percent_off == 20
    await set_program(loyalty_server.admin, admin)
