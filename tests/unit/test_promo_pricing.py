from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from loyalty_service.domain.pricing import Discount, DiscountKind, percent_of, quote

FIXED, PERCENT, AMOUNT = DiscountKind.FIXED_PRICE, DiscountKind.PERCENT_OFF, DiscountKind.AMOUNT_OFF


def test_percent_rounds_half_up_to_a_minor_unit() -> None:
    assert percent_of(150, 1) == 2  # 1.5 -> 2
    assert percent_of(149, 1) == 1  # 1.49 -> 1
    assert percent_of(250, 1) == 3  # 2.5 -> 3 (half-up, not banker's)
    assert percent_of(29900, 15) == 4485
    assert percent_of(0, 50) == 0


def test_each_kind() -> None:
    assert quote(29900, Discount(FIXED, 9900)).final == 9900
    assert quote(29900, Discount(FIXED, 0)).final == 0
    assert quote(29900, Discount(FIXED, 50000)).final == 29900
    assert quote(29900, Discount(PERCENT, 100)).final == 0
    assert quote(999, Discount(PERCENT, 50)).discount == 500
    assert quote(29900, Discount(AMOUNT, 1000)).final == 28900
    assert quote(29900, Discount(AMOUNT, 10**12)).final == 0


discounts = st.one_of(
    st.builds(Discount, st.just(FIXED), st.integers(0, 10**12)),
    st.builds(Discount, st.just(PERCENT), st.integers(1, 100)),
    st.builds(Discount, st.just(AMOUNT), st.integers(1, 10**12)),
)


@given(base=st.integers(0, 10**12), discount=discounts)
def test_final_price_is_between_zero_and_base(base: int, discount: Discount) -> None:
    price = quote(base, discount)
    assert 0 <= price.final <= base
    assert price.discount + price.final == base
    assert price.base == base


@given(base=st.integers(0, 10**9), percent=st.integers(1, 100))
def test_percent_discount_is_the_exact_share_rounded_half_up(base: int, percent: int) -> None:
    exact = base * percent / 100
    off = quote(base, Discount(PERCENT, percent)).discount
    assert abs(off - exact) <= 0.5
    assert off == int(exact + 0.5) or abs(exact - round(exact)) < 1e-9


@given(base=st.integers(0, 10**9), a=st.integers(1, 100), b=st.integers(1, 100))
def test_more_percent_never_costs_more(base: int, a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert quote(base, Discount(PERCENT, high)).final <= quote(base, Discount(PERCENT, low)).final
