"""What one ApplyPromoCode or UsePromoCode call to the store answers (the store decides,
takes the uses and records a refusal in one round trip)."""

from __future__ import annotations

from dataclasses import dataclass

from loyalty_service.domain.eligibility import Tariff
from loyalty_service.domain.pricing import Price
from loyalty_service.domain.purchases import Purchase
from loyalty_service.domain.reasons import Reason
from loyalty_service.domain.schedule import Duration


@dataclass(frozen=True)
class Decision:
    """Why the code may not be applied (reason), or the price it gives on the tariff."""

    reason: Reason | None
    code: str = ""
    tariff: Tariff | None = None
    price: Price | None = None
    duration: Duration = Duration.ONCE
    duration_periods: int = 0


@dataclass(frozen=True)
class UseOutcome:
    """Why the use was refused (reason), or the PENDING purchase; `is_new` is False when it
    is the purchase an earlier call with the same request id made."""

    reason: Reason | None
    purchase: Purchase | None = None
    is_new: bool = False
