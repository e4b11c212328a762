"""The referral program ("member gets member"): who may use a referral code, and what the
referrer receives when the referee's purchase is confirmed.

Checks of a referral code run in a fixed order, so an attempt that fails several ways reports
the first: the user may buy at all, the code was not deactivated, its owner may still refer
(not blocked or deleted), the program is on, the
tariff exists, the code is not the user's own, the user was not referred already, and it is
their first purchase. The last two are checked again in the transaction that takes the use
(a unique index on the referee's live referral, then a re-read of their purchases)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from common.errors import FieldViolation, InvalidArgument
from common.user_status import UserStatus
from loyalty_service.domain.codes import DEFAULT_CURRENCY, PromoCode
from loyalty_service.domain.eligibility import Tariff
from loyalty_service.domain.pricing import Discount, DiscountKind
from loyalty_service.domain.reasons import USER_STATUS_REASON, Reason

MAX_VALID_DAYS = 3650
MAX_REWARDS_CAP = 1_000_000


class Withheld(StrEnum):
    """Why a confirmed referral earned its referrer nothing."""

    REFERRER_BLOCKED = "REFERRER_BLOCKED"
    REFERRER_DELETED = "REFERRER_DELETED"
    REFERRAL_REWARD_CAP_REACHED = "REFERRAL_REWARD_CAP_REACHED"


@dataclass(frozen=True)
class ReferralProgram:
    enabled: bool
    referee: Discount
    reward: Discount
    reward_valid_days: int
    max_rewards_per_referrer: int  # 0: no cap


@dataclass(frozen=True)
class PersonalCode:
    """A user's own referral code and what came of it."""

    user_id: str
    code: str
    referred_count: int
    rewards_issued: int


@dataclass(frozen=True)
class RefereeHistory:
    """What the referral checks need to know about the user who is buying."""

    already_referred: bool
    has_live_purchase: bool  # a PENDING or COMPLETED purchase, with any code


@dataclass(frozen=True)
class ReferralAttempt:
    code: PromoCode
    referrer_id: str
    user_id: str
    user_status: UserStatus
    tariff: Tariff | None
    program: ReferralProgram
    history: RefereeHistory
    # The code's owner: a blocked or deleted one can no longer refer anyone.
    referrer_status: UserStatus = UserStatus.ACTIVE


@dataclass(frozen=True)
class Reward:
    """The outcome for the referrer of one confirmed referral."""

    withheld: Withheld | None
    discount: Discount
    ends_at: datetime


def is_referral(code: PromoCode | None) -> bool:
    return code is not None and code.referrer_id is not None


def rejection_reason(attempt: ReferralAttempt) -> Reason | None:
    if attempt.user_status in USER_STATUS_REASON:
        return USER_STATUS_REASON[attempt.user_status]
    if attempt.code.deactivated:
        return Reason.PROMO_CODE_INACTIVE
    if attempt.referrer_status in USER_STATUS_REASON:
        return Reason.REFERRAL_CODE_INACTIVE
    if not attempt.program.enabled:
        return Reason.REFERRAL_PROGRAM_OFF
    if attempt.tariff is None:
        return Reason.TARIFF_NOT_FOUND
    if attempt.referrer_id == attempt.user_id:
        return Reason.REFERRAL_SELF_USE
    if attempt.history.already_referred:
        return Reason.REFERRAL_ALREADY_REFERRED
    if attempt.history.has_live_purchase:
        return Reason.REFERRAL_NOT_FIRST_PURCHASE
    return None


def withheld_for(referrer_status: UserStatus) -> Withheld | None:
    """Whether the referrer's account keeps them from a reward; the cap is the database's."""
    if referrer_status is UserStatus.BLOCKED:
        return Withheld.REFERRER_BLOCKED
    if referrer_status is UserStatus.DELETED:
        return Withheld.REFERRER_DELETED
    return None


def reward_for(program: ReferralProgram, referrer_status: UserStatus, now: datetime) -> Reward:
    """The reward under the program as it is now (a change affects later rewards only)."""
    return Reward(
        withheld_for(referrer_status),
        program.reward,
        now + timedelta(days=program.reward_valid_days),
    )


def _discount_problems(name: str, discount: Discount | None, currency: str) -> list[str]:
    if discount is None:
        return [f"{name}: give exactly one of percent_off, amount_off, fixed_price"]
    problems = []
    if discount.kind is DiscountKind.PERCENT_OFF and not 1 <= discount.value <= 100:
        problems.append(f"{name}.percent_off: must be between 1 and 100")
    if discount.kind is DiscountKind.AMOUNT_OFF and discount.value < 1:
        problems.append(f"{name}.amount_off.amount_minor: must be at least 1")
    if discount.kind is DiscountKind.FIXED_PRICE and discount.value < 0:
        problems.append(f"{name}.fixed_price.amount_minor: must be at least 0")
    if currency.upper() not in ("", DEFAULT_CURRENCY):
        problems.append(f"{name}: the currency must be {DEFAULT_CURRENCY} (the tariffs' currency)")
    return problems


def check_program(
    enabled: bool,
    referee: tuple[Discount | None, str],
    reward: tuple[Discount | None, str],
    reward_valid_days: int,
    max_rewards_per_referrer: int,
) -> ReferralProgram:
    """The program an admin asked for; INVALID_ARGUMENT naming every bad field."""
    problems = _discount_problems("referee", *referee) + _discount_problems("reward", *reward)
    if not 1 <= reward_valid_days <= MAX_VALID_DAYS:
        problems.append(f"reward_valid_days: must be between 1 and {MAX_VALID_DAYS}")
    if not 0 <= max_rewards_per_referrer <= MAX_REWARDS_CAP:
        problems.append(f"max_rewards_per_referrer: must be 0 (no cap) to {MAX_REWARDS_CAP}")
    if problems:
        raise InvalidArgument([FieldViolation(*p.split(": ", 1)) for p in problems])
    assert referee[0] is not None and reward[0] is not None
    return ReferralProgram(
        enabled, referee[0], reward[0], reward_valid_days, max_rewards_per_referrer
    )


@dataclass(frozen=True)
class Referral:
    purchase_id: str
    referee_id: str
    referrer_id: str


@dataclass(frozen=True)
class TopReferrer:
    user_id: str
    code: str
    referred_count: int
    rewards_issued: int


@dataclass(frozen=True)
class ReferralTotals:
    started: int
    completed: int
    given_back: int
    rewards_issued: int
    withheld_by_reason: dict[str, int]
    rejections_by_reason: dict[str, int]
    top_referrers: list[TopReferrer]
