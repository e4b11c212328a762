"""What a tariff costs with a discount, in integer minor units."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class DiscountKind(StrEnum):
    FIXED_PRICE = "FIXED_PRICE"
    PERCENT_OFF = "PERCENT_OFF"
    AMOUNT_OFF = "AMOUNT_OFF"


@dataclass(frozen=True)
class Discount:
    kind: DiscountKind
    # Minor units for FIXED_PRICE and AMOUNT_OFF; whole percent for PERCENT_OFF.
    value: int


@dataclass(frozen=True)
class Price:
    base: int
    discount: int
    final: int


def percent_of(amount: int, percent: int) -> int:
    """`percent` % of `amount`, rounded half-up to a minor unit."""
    return (amount * percent + 50) // 100


def discount_amount(base: int, discount: Discount, cap: int | None = None) -> int:
    """The discount off `base`; `cap` (a percent code's max_discount) bounds it."""
    if discount.kind is DiscountKind.PERCENT_OFF:
        raw = percent_of(base, discount.value)
    elif discount.kind is DiscountKind.AMOUNT_OFF:
        raw = discount.value
    else:
        raw = base - discount.value
    if cap is not None:
        raw = min(raw, cap)
    # Never below zero nor above the base price, whatever the code says.
    return min(max(raw, 0), base)


def quote(base: int, discount: Discount, cap: int | None = None) -> Price:
    off = discount_amount(base, discount, cap)
    return Price(base=base, discount=off, final=base - off)
