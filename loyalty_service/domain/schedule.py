"""How long a discount lasts on a subscription, and the prices the billing side charges."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

MAX_DURATION_PERIODS = 120  # ten years of monthly billing


class Duration(StrEnum):
    ONCE = "ONCE"
    REPEATING = "REPEATING"
    FOREVER = "FOREVER"


@dataclass(frozen=True)
class PricePeriod:
    periods: int  # 0: every period after
    price: int


def schedule(duration: Duration, periods: int, base: int, final: int) -> tuple[PricePeriod, ...]:
    """ONCE: [{1, final}, {0, base}]; REPEATING n: [{n, final}, {0, base}];
    FOREVER: [{0, final}] (periods 0: every period after)."""
    if duration is Duration.FOREVER:
        return (PricePeriod(0, final),)
    discounted = periods if duration is Duration.REPEATING else 1
    return (PricePeriod(discounted, final), PricePeriod(0, base))
