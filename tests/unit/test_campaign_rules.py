"""Campaign rules as pure functions: schedules, caps, budget and first-purchase checks, specs,
and the CSV form of a spec."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.errors import InvalidArgument
from common.user_status import UserStatus
from loyalty_service.domain import code_csv
from loyalty_service.domain.codes import PromoCode
from loyalty_service.domain.eligibility import Attempt, Tariff, rejection_reason
from loyalty_service.domain.pricing import Discount, DiscountKind, quote
from loyalty_service.domain.reasons import KIND, Reason
from loyalty_service.domain.schedule import Duration, PricePeriod, schedule
from loyalty_service.domain.specs import CodeSpec, MoneyInput, check_spec

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
MONTHLY = Tariff("monthly", "Monthly", 29900, "RUB", 30)
YEARLY = Tariff("yearly", "Yearly", 299000, "RUB", 365)
HALF_OFF = Discount(DiscountKind.PERCENT_OFF, 50)


def _code(**changes: object) -> PromoCode:
    base = PromoCode(
        code="SUBS50",
        discount=HALF_OFF,
        currency="RUB",
        starts_at=None,
        ends_at=None,
        max_uses=0,
        uses=0,
        per_user_limit=0,
        tariff_ids=(),
        all_users=True,
        deactivated=False,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _attempt(code: PromoCode, tariff: Tariff = MONTHLY, has_purchase: bool = False) -> Attempt:
    return Attempt(code, tariff, UserStatus.ACTIVE, True, 0, NOW, has_purchase)


def test_each_duration_gives_its_schedule_field_by_field() -> None:
    once = schedule(Duration.ONCE, 0, 29900, 14950)
    assert [(p.periods, p.price) for p in once] == [(1, 14950), (0, 29900)]
    repeating = schedule(Duration.REPEATING, 3, 29900, 14950)
    assert [(p.periods, p.price) for p in repeating] == [(3, 14950), (0, 29900)]
    assert schedule(Duration.FOREVER, 0, 29900, 14950) == (PricePeriod(0, 14950),)


def test_a_percent_cap_bounds_the_most_expensive_tariff() -> None:
    capped = quote(YEARLY.price, Discount(DiscountKind.PERCENT_OFF, 30), cap=50000)
    assert (capped.discount, capped.final) == (50000, 249000)
    # Below the cap the percent rules.
    assert quote(MONTHLY.price, Discount(DiscountKind.PERCENT_OFF, 30), cap=50000).discount == 8970


@given(
    base=st.integers(0, 10**9),
    percent=st.integers(-500, 500),
    cap=st.one_of(st.none(), st.integers(-(10**6), 10**12)),
)
def test_percent_over_100_or_any_cap_never_gives_a_negative_total(
    base: int, percent: int, cap: int | None
) -> None:
    price = quote(base, Discount(DiscountKind.PERCENT_OFF, percent), cap)
    assert 0 <= price.final <= base and price.discount + price.final == base


def test_minimum_price_first_purchase_and_budget_reasons() -> None:
    assert rejection_reason(_attempt(_code(min_price=30000))) is Reason.PROMO_CODE_BELOW_MINIMUM
    assert rejection_reason(_attempt(_code(min_price=29900))) is None  # reaching it is enough
    first = _code(first_purchase_only=True)
    assert rejection_reason(_attempt(first, has_purchase=True)) is (
        Reason.PROMO_CODE_FIRST_PURCHASE_ONLY
    )
    assert rejection_reason(_attempt(first)) is None
    # 50% of 299.00 is 149.50: a budget with exactly that left still allows one more.
    exact = _code(budget=100000, budget_spent=100000 - 14950)
    assert rejection_reason(_attempt(exact)) is None
    short = replace(exact, budget_spent=exact.budget_spent + 1)
    assert rejection_reason(_attempt(short)) is Reason.PROMO_CODE_BUDGET_SPENT
    # The budget counts the capped discount, not the raw percent.
    capped = _code(budget=1000, max_discount=1000)
    assert rejection_reason(_attempt(capped, YEARLY)) is None


def test_the_nth_use_is_allowed_and_the_next_is_not() -> None:
    assert rejection_reason(_attempt(_code(max_uses=3, uses=2))) is None
    assert rejection_reason(_attempt(_code(max_uses=3, uses=3))) is Reason.PROMO_CODE_EXHAUSTED


def test_new_reasons_are_failed_precondition() -> None:
    for reason in (
        Reason.PROMO_CODE_BUDGET_SPENT,
        Reason.PROMO_CODE_FIRST_PURCHASE_ONLY,
        Reason.PROMO_CODE_BELOW_MINIMUM,
    ):
        assert KIND[reason].value == "FAILED_PRECONDITION"


def _fields(spec: CodeSpec) -> set[str]:
    with pytest.raises(InvalidArgument) as raised:
        check_spec(spec)
    return {v.field for v in raised.value.violations}


def test_spec_checks_of_the_campaign_rules() -> None:
    rub = MoneyInput(100, "RUB")
    assert _fields(CodeSpec(code="ABCDEF", percent_off=150)) == {"percent_off"}
    assert _fields(CodeSpec(code="ABCDEF", percent_off=5, duration=Duration.REPEATING)) == {
        "duration_periods"
    }
    assert _fields(CodeSpec(code="ABCDEF", percent_off=5, duration_periods=3)) == {
        "duration_periods"
    }
    assert _fields(CodeSpec(code="ABCDEF", amount_off=rub, max_discount=rub)) == {"max_discount"}
    assert _fields(CodeSpec(code="ABCDEF", percent_off=5, budget=MoneyInput(0, "RUB"))) == {
        "budget.amount_minor"
    }
    assert _fields(CodeSpec(code="ABCDEF", percent_off=5, min_price=MoneyInput(-1, "RUB"))) == {
        "min_price.amount_minor"
    }
    ok = CodeSpec(
        code="ABCDEF", percent_off=50, duration=Duration.REPEATING, duration_periods=3, budget=rub
    )
    assert check_spec(ok) == "ABCDEF"


def test_a_spec_survives_csv_and_back() -> None:
    moscow = timezone(timedelta(hours=3))
    spec = CodeSpec(
        code="SUBS50",
        percent_off=50,
        starts_at=datetime(2026, 1, 1, 0, 0, tzinfo=moscow),
        ends_at=datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC),
        max_uses=100,
        per_user_limit=0,
        tariff_ids=("monthly", "yearly"),
        user_ids=("3f2b1c1e-5a1e-4c2e-9a37-1f1f1f1f1f1f",),
        description='Spring, "half" off',
        duration=Duration.REPEATING,
        duration_periods=3,
        max_discount=MoneyInput(50000, "RUB"),
        budget=MoneyInput(1_000_000, "RUB"),
        first_purchase_only=True,
        min_price=MoneyInput(10000, "RUB"),
    )
    text = code_csv.header() + code_csv.rows([spec])
    [row] = code_csv.read(text)
    assert code_csv.spec_of(row) == spec


def test_a_bad_row_names_every_bad_column() -> None:
    text = "code,percent_off,ends_at,all_users,duration\nX1,half,2026-01-01T00:00:00,maybe,WEEKLY\n"
    [row] = code_csv.read(text)
    with pytest.raises(InvalidArgument) as raised:
        code_csv.spec_of(row)
    fields = {v.field: v.description for v in raised.value.violations}
    assert set(fields) == {"percent_off", "ends_at", "all_users", "duration"}
    assert "UTC offset" in fields["ends_at"]  # a naive time would end hours early elsewhere


def test_a_header_must_name_known_columns_and_code() -> None:
    for text in ("percent_off\n5\n", "code,colour\nA,red\n"):
        with pytest.raises(InvalidArgument):
            code_csv.read(text)
    [row] = code_csv.read("code,percent_off\nA1,5,extra\n")
    with pytest.raises(InvalidArgument):
        code_csv.spec_of(row)
    assert code_csv.read("\ufeffcode,percent_off\r\n\r\n,\r\nA1,5\r\n") == [
        {"code": "A1", "percent_off": "5"}
    ]
