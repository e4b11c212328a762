"""Why a promo code was refused: the contract's reasons and the gRPC code of each."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from common.errors import ErrorKind, ServiceError
from common.user_status import UserStatus

DOMAIN = "promo.loyalty"


class Reason(StrEnum):
    PROMO_CODE_NOT_FOUND = "PROMO_CODE_NOT_FOUND"
    PROMO_CODE_INACTIVE = "PROMO_CODE_INACTIVE"
    PROMO_CODE_NOT_STARTED = "PROMO_CODE_NOT_STARTED"
    PROMO_CODE_EXPIRED = "PROMO_CODE_EXPIRED"
    PROMO_CODE_EXHAUSTED = "PROMO_CODE_EXHAUSTED"
    PROMO_CODE_USER_LIMIT_REACHED = "PROMO_CODE_USER_LIMIT_REACHED"
    PROMO_CODE_NOT_FOR_USER = "PROMO_CODE_NOT_FOR_USER"
    PROMO_CODE_NOT_FOR_TARIFF = "PROMO_CODE_NOT_FOR_TARIFF"
    PROMO_CODE_BUDGET_SPENT = "PROMO_CODE_BUDGET_SPENT"
    PROMO_CODE_FIRST_PURCHASE_ONLY = "PROMO_CODE_FIRST_PURCHASE_ONLY"
    PROMO_CODE_BELOW_MINIMUM = "PROMO_CODE_BELOW_MINIMUM"
    TARIFF_NOT_FOUND = "TARIFF_NOT_FOUND"
    USER_BLOCKED = "USER_BLOCKED"
    USER_DELETED = "USER_DELETED"
    PURCHASE_NOT_FOUND = "PURCHASE_NOT_FOUND"
    PURCHASE_NOT_CANCELLABLE = "PURCHASE_NOT_CANCELLABLE"
    # Not in the contract's table (it lists no confirm failures); same shape.
    PURCHASE_NOT_CONFIRMABLE = "PURCHASE_NOT_CONFIRMABLE"
    GROUP_NOT_FOUND = "GROUP_NOT_FOUND"
    PROMO_CODE_EXISTS = "PROMO_CODE_EXISTS"
    GROUP_EXISTS = "GROUP_EXISTS"
    REFERRAL_SELF_USE = "REFERRAL_SELF_USE"
    REFERRAL_NOT_FIRST_PURCHASE = "REFERRAL_NOT_FIRST_PURCHASE"
    REFERRAL_ALREADY_REFERRED = "REFERRAL_ALREADY_REFERRED"
    REFERRAL_PROGRAM_OFF = "REFERRAL_PROGRAM_OFF"
    # The referral code's owner is blocked or deleted.
    REFERRAL_CODE_INACTIVE = "REFERRAL_CODE_INACTIVE"
    # Confirm and refund are the payment side's (scope purchases:settle) or an admin's.
    PURCHASE_SETTLEMENT_FORBIDDEN = "PURCHASE_SETTLEMENT_FORBIDDEN"
    PURCHASE_NOT_REFUNDABLE = "PURCHASE_NOT_REFUNDABLE"
    # Not in the contract's table: reviewing a referral that does not exist.
    REFERRAL_NOT_FOUND = "REFERRAL_NOT_FOUND"
    # The guessing throttle (sent with google.rpc.RetryInfo; see guessing.py).
    TOO_MANY_PROMO_ATTEMPTS = "TOO_MANY_PROMO_ATTEMPTS"


KIND: dict[Reason, ErrorKind] = {
    Reason.PROMO_CODE_NOT_FOUND: ErrorKind.NOT_FOUND,
    Reason.PROMO_CODE_INACTIVE: ErrorKind.FAILED_PRECONDITION,
    Reason.PROMO_CODE_NOT_STARTED: ErrorKind.FAILED_PRECONDITION,
    Reason.PROMO_CODE_EXPIRED: ErrorKind.FAILED_PRECONDITION,
    Reason.PROMO_CODE_EXHAUSTED: ErrorKind.FAILED_PRECONDITION,
    Reason.PROMO_CODE_USER_LIMIT_REACHED: ErrorKind.FAILED_PRECONDITION,
    Reason.PROMO_CODE_NOT_FOR_USER: ErrorKind.PERMISSION_DENIED,
    Reason.PROMO_CODE_NOT_FOR_TARIFF: ErrorKind.FAILED_PRECONDITION,
    Reason.PROMO_CODE_BUDGET_SPENT: ErrorKind.FAILED_PRECONDITION,
    Reason.PROMO_CODE_FIRST_PURCHASE_ONLY: ErrorKind.FAILED_PRECONDITION,
    Reason.PROMO_CODE_BELOW_MINIMUM: ErrorKind.FAILED_PRECONDITION,
    Reason.TARIFF_NOT_FOUND: ErrorKind.NOT_FOUND,
    Reason.USER_BLOCKED: ErrorKind.PERMISSION_DENIED,
    Reason.USER_DELETED: ErrorKind.PERMISSION_DENIED,
    Reason.PURCHASE_NOT_FOUND: ErrorKind.NOT_FOUND,
    Reason.PURCHASE_NOT_CANCELLABLE: ErrorKind.FAILED_PRECONDITION,
    Reason.PURCHASE_NOT_CONFIRMABLE: ErrorKind.FAILED_PRECONDITION,
    Reason.GROUP_NOT_FOUND: ErrorKind.NOT_FOUND,
    Reason.PROMO_CODE_EXISTS: ErrorKind.ALREADY_EXISTS,
    Reason.GROUP_EXISTS: ErrorKind.ALREADY_EXISTS,
    Reason.REFERRAL_SELF_USE: ErrorKind.FAILED_PRECONDITION,
    Reason.REFERRAL_NOT_FIRST_PURCHASE: ErrorKind.FAILED_PRECONDITION,
    Reason.REFERRAL_ALREADY_REFERRED: ErrorKind.FAILED_PRECONDITION,
    Reason.REFERRAL_PROGRAM_OFF: ErrorKind.FAILED_PRECONDITION,
    Reason.REFERRAL_CODE_INACTIVE: ErrorKind.FAILED_PRECONDITION,
    Reason.PURCHASE_SETTLEMENT_FORBIDDEN: ErrorKind.PERMISSION_DENIED,
    Reason.PURCHASE_NOT_REFUNDABLE: ErrorKind.FAILED_PRECONDITION,
    Reason.REFERRAL_NOT_FOUND: ErrorKind.NOT_FOUND,
    Reason.TOO_MANY_PROMO_ATTEMPTS: ErrorKind.RESOURCE_EXHAUSTED,
}

# Why a user who is not active may not use codes (loyalty's mirror of auth's status).
USER_STATUS_REASON: dict[UserStatus, Reason] = {
    UserStatus.BLOCKED: Reason.USER_BLOCKED,
    UserStatus.DELETED: Reason.USER_DELETED,
}

MESSAGES: dict[Reason, str] = {
    Reason.PROMO_CODE_NOT_FOUND: "no such promo code",
    Reason.PROMO_CODE_INACTIVE: "this promo code was deactivated",
    Reason.PROMO_CODE_NOT_STARTED: "this promo code is not valid yet",
    Reason.PROMO_CODE_EXPIRED: "this promo code has expired",
    Reason.PROMO_CODE_EXHAUSTED: "this promo code has no uses left",
    Reason.PROMO_CODE_USER_LIMIT_REACHED: "you have used this promo code as often as allowed",
    Reason.PROMO_CODE_NOT_FOR_USER: "this promo code is not available to you",
    Reason.PROMO_CODE_NOT_FOR_TARIFF: "this promo code does not apply to this tariff",
    Reason.PROMO_CODE_BUDGET_SPENT: "this promo code's budget is spent",
    Reason.PROMO_CODE_FIRST_PURCHASE_ONLY: "this promo code is for a first purchase only",
    Reason.PROMO_CODE_BELOW_MINIMUM: "this tariff costs less than this promo code requires",
    Reason.TARIFF_NOT_FOUND: "no such tariff",
    Reason.USER_BLOCKED: "this account is blocked",
    Reason.USER_DELETED: "this account is deleted",
    Reason.PURCHASE_NOT_FOUND: "no such purchase",
    Reason.PURCHASE_NOT_CANCELLABLE: "only a pending purchase can be cancelled",
    Reason.PURCHASE_NOT_CONFIRMABLE: "only a pending purchase can be confirmed",
    Reason.GROUP_NOT_FOUND: "no such group",
    Reason.PROMO_CODE_EXISTS: "a promo code with this text already exists",
    Reason.GROUP_EXISTS: "a group with this name already exists",
    Reason.REFERRAL_SELF_USE: "this is your own referral code",
    Reason.REFERRAL_NOT_FIRST_PURCHASE: "referral codes are for a first purchase only",
    Reason.REFERRAL_ALREADY_REFERRED: "you were already referred by someone",
    Reason.REFERRAL_PROGRAM_OFF: "the referral program is off",
    Reason.REFERRAL_CODE_INACTIVE: "this referral code's owner can no longer refer anyone",
    Reason.PURCHASE_SETTLEMENT_FORBIDDEN: (
        "only the payment side (scope purchases:settle) or an admin may settle a purchase"
    ),
    Reason.PURCHASE_NOT_REFUNDABLE: "only a completed purchase can be refunded",
    Reason.REFERRAL_NOT_FOUND: "no such referral",
    Reason.TOO_MANY_PROMO_ATTEMPTS: "too many promo codes that did not work",
}


@dataclass(frozen=True)
class RecordedRejection:
    """A refused attempt as it was written down (user None: not signed in)."""

    rejection_id: int
    occurred_at: datetime
    user_id: str | None
    code: str
    tariff_id: str
    reason: str


class Rejection(ServiceError):
    """A refusal with one of the reasons above."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        message = f"{MESSAGES[reason]}{': ' + detail if detail else ''}"
        super().__init__(KIND[reason], reason.value, message, DOMAIN)
        self.reason_code = reason
