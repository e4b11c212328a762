"""Whether a user may apply a code to a tariff now, and if not, the one reason why.

The checks run in a fixed order, so an attempt that fails several ways reports the first:
the code exists, the user may buy at all, the user is in the code's audience (so that someone
outside it learns nothing more about the code: not whether it is live, nor its tariffs or
dates; the answer spends a guess of the guessing throttle), the code is live (not deactivated
nor its campaign ended, its campaign not paused, started, not expired), the tariff exists and
the code covers it and costs at least the code's minimum, it is their first purchase when
the code asks for one, and last the counters (uses left, of the code then
of its campaign; budget left for this discount, the code's then the campaign's; then the
user's own limit) — those are re-checked atomically in the database when a use is taken."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from common.user_status import UserStatus
from loyalty_service.domain.codes import CodeStatus, PromoCode, status_of
from loyalty_service.domain.pricing import discount_amount
from loyalty_service.domain.reasons import USER_STATUS_REASON, Reason

_STATUS_REASON = {
    CodeStatus.DEACTIVATED: Reason.PROMO_CODE_INACTIVE,
    CodeStatus.NOT_STARTED: Reason.PROMO_CODE_NOT_STARTED,
    CodeStatus.EXPIRED: Reason.PROMO_CODE_EXPIRED,
    CodeStatus.EXHAUSTED: Reason.PROMO_CODE_EXHAUSTED,
}


@dataclass(frozen=True)
class Tariff:
    tariff_id: str
    name: str
    price: int
    currency: str
    period_days: int


@dataclass(frozen=True)
class Attempt:
    """Everything the decision needs, loaded in one read."""

    code: PromoCode | None
    tariff: Tariff | None
    user_status: UserStatus  # ACTIVE when loyalty has not heard of the user yet
    in_audience: bool
    user_uses: int
    now: datetime
    has_purchase: bool = False  # a pending or completed one


def _tariff_reason(code: PromoCode, tariff: Tariff | None) -> Reason | None:
    if tariff is None:
        return Reason.TARIFF_NOT_FOUND
    if code.tariff_ids and tariff.tariff_id not in code.tariff_ids:
        return Reason.PROMO_CODE_NOT_FOR_TARIFF
    if code.currency != tariff.currency:
        return Reason.PROMO_CODE_NOT_FOR_TARIFF
    if code.min_price is not None and tariff.price < code.min_price:
        return Reason.PROMO_CODE_BELOW_MINIMUM
    return None


def _budget_allows(code: PromoCode, tariff: Tariff) -> bool:
    left = code.budget_left
    return left is None or discount_amount(tariff.price, code.discount, code.max_discount) <= left


def _campaign_budget_allows(code: PromoCode, tariff: Tariff) -> bool:
    left = code.campaign_budget_left
    return left is None or discount_amount(tariff.price, code.discount, code.max_discount) <= left


def _counter_reason(code: PromoCode, tariff: Tariff, user_uses: int) -> Reason | None:
    # The code's own counters first, then its campaign's (the order loyalty_decide checks).
    if code.uses_left == 0 or code.campaign_uses_left == 0:
        return Reason.PROMO_CODE_EXHAUSTED
    if not _budget_allows(code, tariff) or not _campaign_budget_allows(code, tariff):
        return Reason.PROMO_CODE_BUDGET_SPENT
    if code.per_user_limit and user_uses >= code.per_user_limit:
        return Reason.PROMO_CODE_USER_LIMIT_REACHED
    return None


def rejection_reason(attempt: Attempt) -> Reason | None:
    code = attempt.code
    if code is None:
        return Reason.PROMO_CODE_NOT_FOUND
    if attempt.user_status in USER_STATUS_REASON:
        return USER_STATUS_REASON[attempt.user_status]
    if not attempt.in_audience:
        return Reason.PROMO_CODE_NOT_FOR_USER
    status = status_of(code, attempt.now)
    if status is not CodeStatus.DEACTIVATED and code.campaign_status == "PAUSED":
        return Reason.PROMO_CODE_CAMPAIGN_PAUSED
    if status is not CodeStatus.ACTIVE and status is not CodeStatus.EXHAUSTED:
        return _STATUS_REASON[status]
    tariff_reason = _tariff_reason(code, attempt.tariff)
    if tariff_reason is not None:
        return tariff_reason
    assert attempt.tariff is not None
    if code.first_purchase_only and attempt.has_purchase:
        return Reason.PROMO_CODE_FIRST_PURCHASE_ONLY
    return _counter_reason(code, attempt.tariff, attempt.user_uses)
