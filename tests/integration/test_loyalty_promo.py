"""PromoService against real Postgres and Redis, with tokens from the real auth server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from protogen.loyalty.promo.v1 import promo_pb2
from tests.active_codes import all_active
from tests.fixtures.auth import AuthTestServer, TestUser
from tests.fixtures.loyalty import LoyaltyTestServer
from tests.grpc_helpers import bad_request_fields, error_info, reason_of, rejected

Code = grpc.StatusCode
RUB = "RUB"


def new_code() -> str:
    return f"T{uuid.uuid4().hex[:12].upper()}"


def at(delta: timedelta) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC) + delta)
    return stamp


def money(amount: int) -> promo_pb2.Money:
    return promo_pb2.Money(amount_minor=amount, currency=RUB)


@pytest.fixture
async def user(auth_server: AuthTestServer) -> TestUser:
    return await auth_server.new_user()


async def _rejection_reasons(loyalty: LoyaltyTestServer, admin: TestUser, code: str) -> list[str]:
    page = await loyalty.admin.ListRejections(
        promo_pb2.ListRejectionsRequest(code=code), metadata=admin.metadata()
    )
    return [r.reason for r in page.rejections]


async def test_tariffs_are_seeded(loyalty_server: LoyaltyTestServer, user: TestUser) -> None:
    found = await loyalty_server.promo.ListTariffs(
        promo_pb2.ListTariffsRequest(), metadata=user.metadata()
    )
    by_id = {t.tariff_id: t for t in found.tariffs}
    assert by_id["monthly"].price == money(29900) and by_id["monthly"].period_days == 30
    assert by_id["yearly"].price == money(299000) and by_id["yearly"].period_days == 365


@pytest.mark.parametrize(
    ("discount", "tariff", "expected_final"),
    [
        ({"fixed_price": money(9900)}, "monthly", 9900),
        ({"fixed_price": money(0)}, "yearly", 0),  # a free trial
        ({"fixed_price": money(10**9)}, "monthly", 29900),  # never above the base price
        ({"percent_off": 15}, "monthly", 29900 - 4485),
        ({"percent_off": 33}, "monthly", 29900 - 9867),  # 9867.0 exactly
        ({"percent_off": 100}, "yearly", 0),
        ({"amount_off": money(5000)}, "monthly", 24900),
        ({"amount_off": money(10**9)}, "monthly", 0),  # never below zero
    ],
)
async def test_every_discount_kind_prices_the_tariff(
    loyalty_server: LoyaltyTestServer,
    admin: TestUser,
    user: TestUser,
    discount: dict[str, object],
    tariff: str,
    expected_final: int,
) -> None:
    code = new_code()
    await loyalty_server.create_code(admin, code=code, **discount)
    quote = await loyalty_server.promo.ApplyPromoCode(
        promo_pb2.ApplyPromoCodeRequest(code=code.lower(), tariff_id=tariff),
        metadata=user.metadata(),
    )
    assert quote.code == code
    assert quote.final_price.amount_minor == expected_final
    assert quote.base_price.amount_minor == quote.discount.amount_minor + expected_final


async def test_use_confirm_cancel_lifecycle(
    loyalty_server: LoyaltyTestServer, admin: TestUser, user: TestUser, settler: TestUser
) -> None:
    code = new_code()
    await loyalty_server.create_code(admin, code=code, percent_off=10, max_uses=5, per_user_limit=0)
    meta = user.metadata()
    use = promo_pb2.UsePromoCodeRequest(code=code, tariff_id="monthly", request_id="a")
    first = await loyalty_server.promo.UsePromoCode(use, metadata=meta)
    assert first.status == promo_pb2.PURCHASE_STATUS_PENDING
    assert first.final_price.amount_minor == 26910 and first.user_id == user.user_id
    # The payment side confirms; the buyer's own token cannot.
    confirm = promo_pb2.ConfirmPurchaseRequest(purchase_id=first.purchase_id)
    own = loyalty_server.promo.ConfirmPurchase(confirm, metadata=meta)
    assert await reason_of(own, Code.PERMISSION_DENIED) == "PURCHASE_SETTLEMENT_FORBIDDEN"
    confirmed = await loyalty_server.promo.ConfirmPurchase(confirm, metadata=settler.metadata())
    assert confirmed.status == promo_pb2.PURCHASE_STATUS_COMPLETED
    again = await loyalty_server.promo.ConfirmPurchase(confirm, metadata=admin.metadata())
    assert again.status == promo_pb2.PURCHASE_STATUS_COMPLETED
    cancel_done = loyalty_server.promo.CancelPromoCodeUse(
        promo_pb2.CancelPromoCodeUseRequest(purchase_id=first.purchase_id), metadata=meta
    )
    assert await reason_of(cancel_done, Code.FAILED_PRECONDITION) == "PURCHASE_NOT_CANCELLABLE"

    use.request_id = "b"
    second = await loyalty_server.promo.UsePromoCode(use, metadata=meta)
    report = promo_pb2.GetPromoCodeReportRequest(code=code)
    before = await loyalty_server.admin.GetPromoCodeReport(report, metadata=admin.metadata())
    assert (before.uses_taken, before.uses_left) == (2, 3)
    cancel = promo_pb2.CancelPromoCodeUseRequest(purchase_id=second.purchase_id)
    for _ in range(2):  # idempotent
        cancelled = await loyalty_server.promo.CancelPromoCodeUse(cancel, metadata=meta)
        assert cancelled.status == promo_pb2.PURCHASE_STATUS_CANCELLED
    after = await loyalty_server.admin.GetPromoCodeReport(report, metadata=admin.metadata())
    assert (after.uses_taken, after.uses_left) == (1, 4)
    assert dict(after.purchases_by_status) == {"COMPLETED": 1, "CANCELLED": 1}
    confirm_cancelled = loyalty_server.promo.ConfirmPurchase(
        promo_pb2.ConfirmPurchaseRequest(purchase_id=second.purchase_id),
        metadata=settler.metadata(),
    )
    await rejected(confirm_cancelled, Code.FAILED_PRECONDITION)


async def test_only_the_owner_or_an_admin_can_touch_a_purchase(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    owner, stranger = await auth_server.new_user(), await auth_server.new_user()
    code = new_code()
    await loyalty_server.create_code(admin, code=code, percent_off=5)
    purchase = await loyalty_server.promo.UsePromoCode(
        promo_pb2.UsePromoCodeRequest(code=code, tariff_id="monthly"), metadata=owner.metadata()
    )
    cancel = promo_pb2.CancelPromoCodeUseRequest(purchase_id=purchase.purchase_id)
    call = loyalty_server.promo.CancelPromoCodeUse(cancel, metadata=stranger.metadata())
    assert await reason_of(call, Code.NOT_FOUND) == "PURCHASE_NOT_FOUND"
    by_admin = await loyalty_server.promo.CancelPromoCodeUse(cancel, metadata=admin.metadata())
    assert by_admin.status == promo_pb2.PURCHASE_STATUS_CANCELLED
    unknown = promo_pb2.CancelPromoCodeUseRequest(purchase_id=str(uuid.uuid4()))
    call = loyalty_server.promo.CancelPromoCodeUse(unknown, metadata=owner.metadata())
    assert await reason_of(call, Code.NOT_FOUND) == "PURCHASE_NOT_FOUND"


async def _expect_reason(
    loyalty: LoyaltyTestServer,
    who: TestUser,
    code: str,
    tariff: str,
    reason: str,
    status: grpc.StatusCode,
) -> None:
    apply = loyalty.promo.ApplyPromoCode(
        promo_pb2.ApplyPromoCodeRequest(code=code, tariff_id=tariff), metadata=who.metadata()
    )
    use = loyalty.promo.UsePromoCode(
        promo_pb2.UsePromoCodeRequest(code=code, tariff_id=tariff), metadata=who.metadata()
    )
    for call in (apply, use):
        error = await rejected(call, status)
        info = error_info(error)
        assert (info.reason, info.domain) == (reason, "promo.loyalty")


async def test_every_rejection_reason_is_answered_and_recorded(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    user = await auth_server.new_user()
    other = await auth_server.new_user()
    make = loyalty_server.create_code
    codes = {
        name: new_code()
        for name in (
            "inactive",
            "later",
            "over",
            "exhausted",
            "limit",
            "private",
            "tariff",
            "open",
        )
    }
    await make(admin, code=codes["inactive"], percent_off=5)
    await loyalty_server.admin.DeactivatePromoCode(
        promo_pb2.DeactivatePromoCodeRequest(code=codes["inactive"]), metadata=admin.metadata()
    )
    await make(admin, code=codes["later"], percent_off=5, starts_at=at(timedelta(days=1)))
    await make(
        admin,
        code=codes["over"],
        percent_off=5,
        starts_at=at(timedelta(days=-2)),
        ends_at=at(timedelta(days=-1)),
    )
    await make(admin, code=codes["exhausted"], percent_off=5, max_uses=1)
    await make(admin, code=codes["limit"], percent_off=5, per_user_limit=1)
    await make(
        admin, code=codes["private"], percent_off=5, all_users=False, user_ids=[other.user_id]
    )
    await make(admin, code=codes["tariff"], percent_off=5, tariff_ids=["yearly"])
    await make(admin, code=codes["open"], percent_off=5)
    for holder, code in ((other, codes["exhausted"]), (user, codes["limit"])):
        await loyalty_server.promo.UsePromoCode(
            promo_pb2.UsePromoCodeRequest(code=code, tariff_id="monthly"),
            metadata=holder.metadata(),
        )
    cases = [
        ("NOPE" + codes["open"], "monthly", "PROMO_CODE_NOT_FOUND", Code.NOT_FOUND),
        (codes["inactive"], "monthly", "PROMO_CODE_INACTIVE", Code.FAILED_PRECONDITION),
        (codes["later"], "monthly", "PROMO_CODE_NOT_STARTED", Code.FAILED_PRECONDITION),
        (codes["over"], "monthly", "PROMO_CODE_EXPIRED", Code.FAILED_PRECONDITION),
        (codes["exhausted"], "monthly", "PROMO_CODE_EXHAUSTED", Code.FAILED_PRECONDITION),
        (codes["limit"], "monthly", "PROMO_CODE_USER_LIMIT_REACHED", Code.FAILED_PRECONDITION),
        (codes["private"], "monthly", "PROMO_CODE_NOT_FOR_USER", Code.PERMISSION_DENIED),
        (codes["tariff"], "monthly", "PROMO_CODE_NOT_FOR_TARIFF", Code.FAILED_PRECONDITION),
        (codes["open"], "weekly", "TARIFF_NOT_FOUND", Code.NOT_FOUND),
    ]
    for code, tariff, reason, status in cases:
        await _expect_reason(loyalty_server, user, code, tariff, reason, status)
        assert await _rejection_reasons(loyalty_server, admin, code) == [reason, reason]
    blocked, deleted = await auth_server.new_user(), await auth_server.new_user()
    await loyalty_server.set_user_status(blocked.user_id, "BLOCKED", 2)
    await loyalty_server.set_user_status(deleted.user_id, "DELETED", 2)
    await _expect_reason(
        loyalty_server, blocked, codes["open"], "monthly", "USER_BLOCKED", Code.PERMISSION_DENIED
    )
    await _expect_reason(
        loyalty_server, deleted, codes["open"], "monthly", "USER_DELETED", Code.PERMISSION_DENIED
    )
    page = await loyalty_server.admin.ListRejections(
        promo_pb2.ListRejectionsRequest(code=codes["open"], reason="USER_BLOCKED"),
        metadata=admin.metadata(),
    )
    assert {(r.user_id, r.tariff_id) for r in page.rejections} == {(blocked.user_id, "monthly")}
    assert page.rejections[0].occurred_at.seconds > 0
    # Unblocking (a newer version) lets the user buy again; an older one changes nothing.
    await loyalty_server.set_user_status(blocked.user_id, "ACTIVE", 1)
    await _expect_reason(
        loyalty_server, blocked, codes["open"], "monthly", "USER_BLOCKED", Code.PERMISSION_DENIED
    )
    await loyalty_server.set_user_status(blocked.user_id, "ACTIVE", 3)
    await loyalty_server.promo.ApplyPromoCode(
        promo_pb2.ApplyPromoCodeRequest(code=codes["open"], tariff_id="monthly"),
        metadata=blocked.metadata(),
    )


async def test_active_codes_are_exactly_those_the_user_could_apply(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    user = await auth_server.new_user()
    group = await loyalty_server.admin.CreateGroup(
        promo_pb2.CreateGroupRequest(name=f"vip-{uuid.uuid4().hex[:6]}"), metadata=admin.metadata()
    )
    await loyalty_server.admin.AddGroupMembers(
        promo_pb2.GroupMembersRequest(group_id=group.group_id, user_ids=[user.user_id]),
        metadata=admin.metadata(),
    )
    make = loyalty_server.create_code
    mine = {new_code() for _ in range(3)}
    personal, by_group, twice = sorted(mine)
    await make(admin, code=personal, percent_off=5, all_users=False, user_ids=[user.user_id])
    await make(admin, code=by_group, percent_off=5, all_users=False, group_ids=[group.group_id])
    await make(admin, code=twice, percent_off=5, per_user_limit=2, ends_at=at(timedelta(hours=1)))
    used_up = new_code()
    await make(admin, code=used_up, percent_off=5)
    await loyalty_server.promo.UsePromoCode(
        promo_pb2.UsePromoCodeRequest(code=used_up, tariff_id="monthly"), metadata=user.metadata()
    )
    not_mine = new_code()
    await make(admin, code=not_mine, percent_off=5, all_users=False, user_ids=[str(uuid.uuid4())])
    later = new_code()
    await make(admin, code=later, percent_off=5, starts_at=at(timedelta(days=1)))
    listed = await all_active(loyalty_server.promo, user)
    names = {c.code for c in listed}
    assert mine <= names
    assert not {used_up, not_mine, later} & names
    assert {c.code: c.uses_left_for_user for c in listed}[twice] == 2
    await loyalty_server.set_user_status(user.user_id, "BLOCKED", 5)
    assert await all_active(loyalty_server.promo, user) == []


async def test_malformed_requests_name_their_fields(
    loyalty_server: LoyaltyTestServer, user: TestUser
) -> None:
    meta = user.metadata()
    promo = loyalty_server.promo
    cases = [
        (
            promo.ApplyPromoCode(
                promo_pb2.ApplyPromoCodeRequest(tariff_id="monthly"), metadata=meta
            ),
            {"code"},
        ),
        (
            promo.ApplyPromoCode(promo_pb2.ApplyPromoCodeRequest(code="X"), metadata=meta),
            {"tariff_id"},
        ),
        (
            promo.ApplyPromoCode(promo_pb2.ApplyPromoCodeRequest(), metadata=meta),
            {"code", "tariff_id"},
        ),
        (
            promo.ApplyPromoCode(
                promo_pb2.ApplyPromoCodeRequest(code="X" * 65, tariff_id="m"), metadata=meta
            ),
            {"code"},
        ),
        (
            promo.UsePromoCode(
                promo_pb2.UsePromoCodeRequest(code="X", tariff_id="monthly", request_id="r" * 129),
                metadata=meta,
            ),
            {"request_id"},
        ),
        (
            promo.ConfirmPurchase(
                promo_pb2.ConfirmPurchaseRequest(purchase_id="nope"), metadata=meta
            ),
            {"purchase_id"},
        ),
        (
            promo.CancelPromoCodeUse(promo_pb2.CancelPromoCodeUseRequest(), metadata=meta),
            {"purchase_id"},
        ),
        (
            promo.ListMyPurchases(promo_pb2.ListMyPurchasesRequest(page_size=-1), metadata=meta),
            {"page_size"},
        ),
        (
            promo.ListMyPurchases(promo_pb2.ListMyPurchasesRequest(page_size=1001), metadata=meta),
            {"page_size"},
        ),
        (
            promo.ListMyPurchases(
                promo_pb2.ListMyPurchasesRequest(page_token="zzz"), metadata=meta
            ),
            {"page_token"},
        ),
    ]
    for call, fields in cases:
        assert bad_request_fields(await rejected(call, Code.INVALID_ARGUMENT)) == fields


async def test_callers_need_a_valid_token_and_admins_the_role(
    loyalty_server: LoyaltyTestServer, user: TestUser, auth_server: AuthTestServer
) -> None:
    request = promo_pb2.ListTariffsRequest()
    for metadata in [(), (("authorization", "Bearer garbage"),), (("authorization", "Token x"),)]:
        await rejected(
            loyalty_server.promo.ListTariffs(request, metadata=metadata), Code.UNAUTHENTICATED
        )
    spec = promo_pb2.PromoCodeSpec(code=new_code(), percent_off=5, all_users=True)
    await rejected(
        loyalty_server.admin.CreatePromoCode(spec, metadata=user.metadata()), Code.PERMISSION_DENIED
    )
    # Logout in auth reaches loyalty at once through the shared revocation list.
    fresh = await auth_server.new_user()
    await loyalty_server.promo.ListTariffs(request, metadata=fresh.metadata())
    from protogen.loyalty.auth.v1 import auth_pb2

    await auth_server.auth.Logout(auth_pb2.LogoutRequest(refresh_token=fresh.refresh_token))
    await rejected(
        loyalty_server.promo.ListTariffs(request, metadata=fresh.metadata()), Code.UNAUTHENTICATED
    )


async def test_my_purchases_page_newest_first(
    loyalty_server: LoyaltyTestServer, admin: TestUser, user: TestUser
) -> None:
    code = new_code()
    await loyalty_server.create_code(admin, code=code, percent_off=5, per_user_limit=0)
    made = []
    for index in range(5):
        purchase = await loyalty_server.promo.UsePromoCode(
            promo_pb2.UsePromoCodeRequest(code=code, tariff_id="monthly", request_id=str(index)),
            metadata=user.metadata(),
        )
        made.append(purchase.purchase_id)
    seen: list[str] = []
    token = ""
    while True:
        page = await loyalty_server.promo.ListMyPurchases(
            promo_pb2.ListMyPurchasesRequest(page_size=2, page_token=token),
            metadata=user.metadata(),
        )
        seen += [p.purchase_id for p in page.purchases]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(made))


async def test_active_codes_page_ending_soonest_first(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    user = await auth_server.new_user()
    ending = {new_code(): at(timedelta(hours=hours)) for hours in (3, 1, 2)}
    for code, ends_at in ending.items():
        await loyalty_server.create_code(admin, code=code, percent_off=5, ends_at=ends_at)
    open_ended = sorted(new_code() for _ in range(3))
    for code in open_ended:
        await loyalty_server.create_code(admin, code=code, percent_off=5)

    whole = [c.code for c in await all_active(loyalty_server.promo, user)]
    # Pages of 2 through the first 100 codes: other tests leave thousands of codes for
    # everyone, and paging through all of them by 2 takes thousands of calls.
    pages = await all_active(loyalty_server.promo, user, page_size=2, max_pages=50)
    paged = [c.code for c in pages]
    assert paged == whole[: len(paged)] and len(set(paged)) == len(paged)
    assert len(paged) == min(100, len(whole))
    mine = [code for code in whole if code in {*ending, *open_ended}]
    by_end = sorted(ending, key=lambda code: ending[code].ToDatetime())
    assert mine[:3] == by_end  # ending soonest first; open-ended codes after, by code
    assert mine[3:] == open_ended
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await loyalty_server.promo.ListActivePromoCodes(
            promo_pb2.ListActivePromoCodesRequest(page_token="not a token"),
            metadata=user.metadata(),
        )
    assert bad.value.code() == Code.INVALID_ARGUMENT
    assert bad_request_fields(bad.value) == {"page_token"}
