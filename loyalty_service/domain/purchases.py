"""A purchase's life: PENDING, then COMPLETED, CANCELLED or EXPIRED; a COMPLETED one may
later be REFUNDED. CANCELLED, EXPIRED and REFUNDED are final."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from loyalty_service.domain.reasons import Reason, Rejection
from loyalty_service.domain.schedule import Duration


class PurchaseStatus(StrEnum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    REFUNDED = "REFUNDED"


# The statuses of a purchase that holds its code's use: counted against limits, budgets and
# "first purchase", and what makes a user "already referred".
LIVE = frozenset({PurchaseStatus.PENDING, PurchaseStatus.COMPLETED})

# The transitions there are, and which of them give the code's use back. A refund gives it
# back only where the code says so (refund_returns_use): see gives_use_back.
TRANSITIONS: dict[tuple[PurchaseStatus, PurchaseStatus], bool] = {
    (PurchaseStatus.PENDING, PurchaseStatus.COMPLETED): False,
    (PurchaseStatus.PENDING, PurchaseStatus.CANCELLED): True,
    (PurchaseStatus.PENDING, PurchaseStatus.EXPIRED): True,
    (PurchaseStatus.COMPLETED, PurchaseStatus.REFUNDED): True,
}


@dataclass(frozen=True)
class Purchase:
    purchase_id: str
    user_id: str
    code: str
    tariff_id: str
    base: int
    discount: int
    final: int
    currency: str
    status: PurchaseStatus
    request_id: str | None
    duration: Duration
    duration_periods: int
    created_at: datetime
    updated_at: datetime
    # The counter slot its use came from (store: promo_code_slots); None before slots existed.
    slot: int | None = None


@dataclass(frozen=True)
class Ended:
    """A purchase that a batch (the sweeper's expiry) moved, with its referrer (None: none),
    for the event each one gets."""

    purchase: Purchase
    referrer_id: str | None


def can_move(current: PurchaseStatus, target: PurchaseStatus) -> bool:
    return (current, target) in TRANSITIONS


def gives_use_back(
    current: PurchaseStatus, target: PurchaseStatus, refund_returns_use: bool = True
) -> bool:
    if target is PurchaseStatus.REFUNDED and not refund_returns_use:
        return False
    return TRANSITIONS.get((current, target), False)


def check_cancel(current: PurchaseStatus) -> bool:
    """Whether a cancel changes anything; cancelling twice is a no-op, other states refuse."""
    if current is PurchaseStatus.CANCELLED:
        return False
    if not can_move(current, PurchaseStatus.CANCELLED):
        raise Rejection(Reason.PURCHASE_NOT_CANCELLABLE, f"it is {current.value}")
    return True


def check_confirm(current: PurchaseStatus) -> bool:
    """Whether a confirm changes anything; confirming twice is a no-op."""
    if current is PurchaseStatus.COMPLETED:
        return False
    if not can_move(current, PurchaseStatus.COMPLETED):
        raise Rejection(Reason.PURCHASE_NOT_CONFIRMABLE, f"it is {current.value}")
    return True


def check_settler(is_admin: bool, may_settle: bool) -> None:
    """Confirm and refund move money: the payment side's (scope purchases:settle) or an
    admin's. Checked before the purchase is looked up, so a refused caller learns nothing
    about whether it exists."""
    if not (is_admin or may_settle):
        raise Rejection(Reason.PURCHASE_SETTLEMENT_FORBIDDEN)


def may_see(is_owner: bool, is_settler: bool) -> bool:
    """Whose purchase a caller may cancel: their own (PENDING, by the transition rule), or
    anyone's for settlers and admins. Anyone else's is answered as missing (ids cannot be
    probed)."""
    return is_owner or is_settler


def check_refund(current: PurchaseStatus) -> bool:
    """Whether a refund changes anything; refunding twice is a no-op, only COMPLETED moves."""
    if current is PurchaseStatus.REFUNDED:
        return False
    if not can_move(current, PurchaseStatus.REFUNDED):
        raise Rejection(Reason.PURCHASE_NOT_REFUNDABLE, f"it is {current.value}")
    return True
