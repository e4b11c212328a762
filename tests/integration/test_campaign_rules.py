"""Campaign rules over gRPC: durations and their schedules, caps, first purchase, minimum
price, the daily report, and the pitfalls other promotion engines shipped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from protogen.loyalty.promo.v1 import promo_pb2
from tests.active_codes import all_active
from tests.fixtures.auth import AuthTestServer, TestUser
from tests.fixtures.loyalty import LoyaltyTestServer
from tests.grpc_helpers import bad_request_fields, reason_of
from tests.integration.test_loyalty_promo import money, new_code

Code = grpc.StatusCode
FAILED = Code.FAILED_PRECONDITION


def _periods(message: promo_pb2.Quote | promo_pb2.Purchase) -> list[tuple[int, int, str]]:
    return [(p.periods, p.price.amount_minor, p.price.currency) for p in message.schedule]


async def _apply(
    loyalty: LoyaltyTestServer, user: TestUser, code: str, tariff: str = "monthly"
) -> promo_pb2.Quote:
    quote: promo_pb2.Quote = await loyalty.promo.ApplyPromoCode(
        promo_pb2.ApplyPromoCodeRequest(code=code, tariff_id=tariff), metadata=user.metadata()
    )
    return quote


async def _use(
    loyalty: LoyaltyTestServer, user: TestUser, code: str, tariff: str = "monthly"
) -> promo_pb2.Purchase:
    purchase: promo_pb2.Purchase = await loyalty.promo.UsePromoCode(
        promo_pb2.UsePromoCodeRequest(code=code, tariff_id=tariff), metadata=user.metadata()
    )
    return purchase


@pytest.mark.parametrize(
    ("duration", "periods", "expected"),
    [
        ({}, 0, [(1, 14950, "RUB"), (0, 29900, "RUB")]),  # ONCE by default
        ({"duration": promo_pb2.DURATION_ONCE}, 0, [(1, 14950, "RUB"), (0, 29900, "RUB")]),
        ({"duration": promo_pb2.DURATION_REPEATING}, 3, [(3, 14950, "RUB"), (0, 29900, "RUB")]),
        ({"duration": promo_pb2.DURATION_FOREVER}, 0, [(0, 14950, "RUB")]),
    ],
)
async def test_each_duration_puts_its_schedule_on_quote_and_purchase(
    loyalty_server: LoyaltyTestServer,
    admin: TestUser,
    auth_server: AuthTestServer,
    duration: dict[str, int],
    periods: int,
    expected: list[tuple[int, int, str]],
) -> None:
    code = new_code()
    made = await loyalty_server.create_code(
        admin, code=code, percent_off=50, duration_periods=periods, **duration
    )
    assert made.spec.duration == duration.get("duration", promo_pb2.DURATION_ONCE)
    assert made.spec.duration_periods == periods
    user = auth_server.token_for()
    quote = await _apply(loyalty_server, user, code)
    assert _periods(quote) == expected
    purchase = await _use(loyalty_server, user, code)
    assert _periods(purchase) == expected
    listed = await loyalty_server.promo.ListMyPurchases(
        promo_pb2.ListMyPurchasesRequest(), metadata=user.metadata()
    )
    assert _periods(listed.purchases[0]) == expected


async def test_a_percent_cap_on_the_most_expensive_tariff(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    code = new_code()
    made = await loyalty_server.create_code(
        admin, code=code, percent_off=30, max_discount=money(50000)
    )
    assert made.spec.max_discount == money(50000)
    user = auth_server.token_for()
    yearly = await _apply(loyalty_server, user, code, "yearly")
    assert (yearly.discount, yearly.final_price) == (money(50000), money(249000))
    monthly = await _apply(loyalty_server, user, code, "monthly")
    assert monthly.discount == money(8970)  # under the cap, 30% of 299.00
    purchase = await _use(loyalty_server, user, code, "yearly")
    assert (purchase.discount, purchase.final_price) == (money(50000), money(249000))


async def test_first_purchase_only(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    first, other = new_code(), new_code()
    await loyalty_server.create_code(admin, code=first, percent_off=50, first_purchase_only=True)
    await loyalty_server.create_code(admin, code=other, percent_off=10)
    newcomer, regular = auth_server.token_for(), auth_server.token_for()
    assert (await _apply(loyalty_server, newcomer, first)).final_price == money(14950)
    await _use(loyalty_server, regular, other)
    for call in (_apply(loyalty_server, regular, first), _use(loyalty_server, regular, first)):
        assert await reason_of(call, FAILED) == "PROMO_CODE_FIRST_PURCHASE_ONLY"
    # A cancelled purchase is no purchase: the user is a newcomer again.
    mine = await loyalty_server.promo.ListMyPurchases(
        promo_pb2.ListMyPurchasesRequest(), metadata=regular.metadata()
    )
    await loyalty_server.promo.CancelPromoCodeUse(
        promo_pb2.CancelPromoCodeUseRequest(purchase_id=mine.purchases[0].purchase_id),
        metadata=regular.metadata(),
    )
    assert (await _use(loyalty_server, regular, first)).final_price == money(14950)


async def test_minimum_price(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    code = new_code()
    await loyalty_server.create_code(
        admin, code=code, amount_off=money(5000), min_price=money(100000)
    )
    user = auth_server.token_for()
    for call in (_apply(loyalty_server, user, code), _use(loyalty_server, user, code)):
        assert await reason_of(call, FAILED) == "PROMO_CODE_BELOW_MINIMUM"
    assert (await _apply(loyalty_server, user, code, "yearly")).final_price == money(294000)
    report = await loyalty_server.admin.GetPromoCodeReport(
        promo_pb2.GetPromoCodeReportRequest(code=code), metadata=admin.metadata()
    )
    assert report.rejections_by_reason["PROMO_CODE_BELOW_MINIMUM"] == 2


@pytest.mark.parametrize(
    ("spec", "fields"),
    [
        ({"percent_off": 101}, {"percent_off"}),
        ({"percent_off": 50, "duration": promo_pb2.DURATION_REPEATING}, {"duration_periods"}),
        ({"percent_off": 50, "duration": 9}, {"duration"}),
        ({"amount_off": money(100), "max_discount": money(50)}, {"max_discount"}),
        ({"percent_off": 50, "budget": money(-1)}, {"budget.amount_minor"}),
        ({"percent_off": 50, "min_price": money(-5)}, {"min_price.amount_minor"}),
    ],
)
async def test_bad_campaign_rules_are_invalid_arguments(
    loyalty_server: LoyaltyTestServer,
    admin: TestUser,
    spec: dict[str, object],
    fields: set[str],
) -> None:
    call = loyalty_server.admin.CreatePromoCode(
        promo_pb2.PromoCodeSpec(code=new_code(), all_users=True, **spec),  # type: ignore[arg-type]
        metadata=admin.metadata(),
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    assert raised.value.code() == Code.INVALID_ARGUMENT
    assert bad_request_fields(raised.value) == fields


async def test_the_nth_use_succeeds_and_only_the_next_is_refused(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    """shopware#4177 refused the Nth use. Here uses 1..N pass, N+1 does not."""
    code = new_code()
    await loyalty_server.create_code(admin, code=code, percent_off=10, max_uses=3)
    for _ in range(3):
        await _use(loyalty_server, auth_server.token_for(), code)
    assert await reason_of(_use(loyalty_server, auth_server.token_for(), code), FAILED) == (
        "PROMO_CODE_EXHAUSTED"
    )
    budgeted = new_code()  # the same at the edge of a budget: the last kopeck may be spent
    await loyalty_server.create_code(admin, code=budgeted, percent_off=50, budget=money(2 * 14950))
    for _ in range(2):
        await _use(loyalty_server, auth_server.token_for(), budgeted)
    assert await reason_of(_use(loyalty_server, auth_server.token_for(), budgeted), FAILED) == (
        "PROMO_CODE_BUDGET_SPENT"
    )


async def test_mixed_case_and_wildcard_characters_are_found_once_and_applied_once(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    suffix = new_code()[1:7]
    code = f"Spring_Sale_{suffix}"
    made = await loyalty_server.create_code(admin, code=code, percent_off=20)
    assert made.code == code.upper()
    user = auth_server.token_for()
    await _use(loyalty_server, user, f"  {code.lower()} ")
    # The same code typed differently is the same code: the one use per user is taken.
    assert await reason_of(_use(loyalty_server, user, code.upper()), FAILED) == (
        "PROMO_CODE_USER_LIMIT_REACHED"
    )
    # '%' and '_' in a search are characters, not wildcards.
    lookalike = f"SPRINGXSALE_{suffix}"
    await loyalty_server.create_code(admin, code=lookalike, percent_off=20)
    found = await loyalty_server.admin.ListPromoCodes(
        promo_pb2.ListPromoCodesRequest(query=f"g_sale_{suffix}", page_size=1000),
        metadata=admin.metadata(),
    )
    assert [c.code for c in found.promo_codes] == [code.upper()]
    percent = await loyalty_server.admin.ListPromoCodes(
        promo_pb2.ListPromoCodesRequest(query="%", page_size=10), metadata=admin.metadata()
    )
    assert list(percent.promo_codes) == []
    # A code with '%' cannot be made, and typing one is a plain NOT_FOUND, recorded.
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await loyalty_server.create_code(admin, code=f"HALF%{suffix}", percent_off=50)
    assert bad_request_fields(raised.value) == {"code"}
    typed = f"half%{suffix}"
    assert await reason_of(_use(loyalty_server, user, typed), Code.NOT_FOUND) == (
        "PROMO_CODE_NOT_FOUND"
    )
    rejections = await loyalty_server.admin.ListRejections(
        promo_pb2.ListRejectionsRequest(code=typed), metadata=admin.metadata()
    )
    assert [r.code for r in rejections.rejections] == [typed.upper()]


def _stamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


async def test_a_window_written_in_another_time_zone_ends_at_its_instant(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    """A window given in UTC-10 must not end hours early (nor late) for a server in UTC."""
    honolulu = timezone(timedelta(hours=-10))
    ends = (datetime.now(UTC) + timedelta(hours=2)).astimezone(honolulu).replace(microsecond=0)
    code = new_code()
    made = await loyalty_server.create_code(admin, code=code, percent_off=10, ends_at=_stamp(ends))
    assert made.spec.ends_at.ToDatetime(UTC) == ends.astimezone(UTC)
    assert made.status == promo_pb2.PROMO_CODE_STATUS_ACTIVE
    await _apply(loyalty_server, auth_server.token_for(), code)
    ended = new_code()
    await loyalty_server.create_code(
        admin,
        code=ended,
        percent_off=10,
        ends_at=_stamp(datetime.now(honolulu) - timedelta(seconds=1)),
    )
    assert await reason_of(_apply(loyalty_server, auth_server.token_for(), ended), FAILED) == (
        "PROMO_CODE_EXPIRED"
    )


async def test_percent_over_100_is_refused_and_no_total_goes_negative(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await loyalty_server.create_code(admin, code=new_code(), percent_off=150)
    assert raised.value.code() == Code.INVALID_ARGUMENT
    user = auth_server.token_for()
    for spec in (
        {"percent_off": 100, "max_discount": money(10**12)},
        {"amount_off": money(10**12)},
        {"fixed_price": money(0)},
    ):
        code = new_code()
        await loyalty_server.create_code(admin, code=code, per_user_limit=0, **spec)
        for tariff in ("monthly", "yearly"):
            quote = await _apply(loyalty_server, user, code, tariff)
            assert quote.final_price == money(0)
            assert all(p.price.amount_minor >= 0 for p in quote.schedule)


async def test_the_report_counts_each_utc_day(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    code = new_code()
    await loyalty_server.create_code(admin, code=code, percent_off=50, max_uses=3)
    buyers = [auth_server.token_for() for _ in range(4)]
    made = [await _use(loyalty_server, b, code) for b in buyers[:3]]
    await reason_of(_use(loyalty_server, buyers[3], code), FAILED)
    await loyalty_server.promo.ConfirmPurchase(
        promo_pb2.ConfirmPurchaseRequest(purchase_id=made[0].purchase_id),
        metadata=auth_server.service_token("purchases:settle").metadata(),
    )
    await loyalty_server.promo.CancelPromoCodeUse(
        promo_pb2.CancelPromoCodeUseRequest(purchase_id=made[1].purchase_id),
        metadata=buyers[1].metadata(),
    )
    # Move the first purchase to 23:59 UTC of yesterday, its confirm to 00:00 today.
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    await loyalty_server.app.pool.execute(
        "UPDATE purchases SET created_at = $2, updated_at = $3 WHERE purchase_id = $1",
        made[0].purchase_id,
        today - timedelta(minutes=1),
        today,
    )
    report = await loyalty_server.admin.GetPromoCodeReport(
        promo_pb2.GetPromoCodeReportRequest(code=code), metadata=admin.metadata()
    )
    days = {d.date: d for d in report.daily}
    yesterday, now = (today - timedelta(days=1)).date().isoformat(), today.date().isoformat()
    assert list(days) == [yesterday, now]
    assert (days[yesterday].uses, days[yesterday].confirms) == (1, 0)
    assert days[yesterday].discount_granted == money(14950)
    assert (days[now].uses, days[now].confirms, days[now].cancels) == (2, 1, 1)
    assert (days[now].rejections, days[now].discount_granted) == (1, money(14950))
    assert report.discount_granted == money(2 * 14950)
    assert not report.HasField("budget")


async def _active(loyalty: LoyaltyTestServer, user: TestUser) -> set[str]:
    return {c.code for c in await all_active(loyalty.promo, user)}


async def test_active_codes_leave_out_spent_budgets_and_first_purchase_codes_of_buyers(
    loyalty_server: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    budgeted, first = new_code(), new_code()
    await loyalty_server.create_code(admin, code=budgeted, percent_off=50, budget=money(14950))
    await loyalty_server.create_code(
        admin,
        code=first,
        percent_off=50,
        first_purchase_only=True,
        duration=promo_pb2.DURATION_REPEATING,
        duration_periods=3,
    )
    user = auth_server.token_for()
    shown = {c.code: c for c in await all_active(loyalty_server.promo, user)}
    assert (shown[first].duration, shown[first].duration_periods) == (
        promo_pb2.DURATION_REPEATING,
        3,
    )
    await _use(loyalty_server, user, budgeted)
    assert not {budgeted, first} & await _active(loyalty_server, user)
    assert {budgeted, first} & await _active(loyalty_server, auth_server.token_for()) == {first}
