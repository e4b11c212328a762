"""The referral program ("member gets member"): who may use a referral code, and what the
referrer receives when the referee's purchase is confirmed: a reward that is held
(PENDING) until the refund window has passed, released by the sweeper (ISSUED), reversed or
clawed back by a refund, or held for an admin's review when a fraud signal fires.

Checks of a referral code run in a fixed order, so an attempt that fails several ways reports
the first: the user may buy at all, the code was not deactivated, its owner may still refer
(not blocked or deleted: REFERRAL_CODE_INACTIVE), the program is on, the
tariff exists, the code is not the user's own, the user was not referred already, and it is
their first purchase. The last two are checked again in the transaction that takes the use
(a unique index on the referee's live referral, then a re-read of their purchases)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
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
# How long a reward is held after the confirm when the admin does not say (14 days), and the
# longest hold (a year).
DEFAULT_HOLD_SECONDS = 14 * 24 * 3600
MAX_HOLD_SECONDS = 365 * 24 * 3600
# A fresh program's total cap per referrer ("unlimited" invited farming).
DEFAULT_REWARDS_CAP = 10


class Withheld(StrEnum):
    """Why a confirmed referral earned its referrer nothing."""

    REFERRER_BLOCKED = "REFERRER_BLOCKED"
    REFERRER_DELETED = "REFERRER_DELETED"
    REFERRAL_REWARD_CAP_REACHED = "REFERRAL_REWARD_CAP_REACHED"
    # The velocity limit: max_rewards_per_referrer_per_day (UTC days).
    REFERRAL_DAILY_CAP_REACHED = "REFERRAL_DAILY_CAP_REACHED"


class RewardState(StrEnum):
    """Where the reward of one confirmed referral stands (docs/loyalty.md has the diagram)."""

    PENDING = "PENDING"
    ISSUED = "ISSUED"
    REVERSED = "REVERSED"
    HELD_FOR_REVIEW = "HELD_FOR_REVIEW"
    REJECTED = "REJECTED"
    WITHHELD = "WITHHELD"
    CLAWED_BACK = "CLAWED_BACK"
    CLAWBACK_FAILED = "CLAWBACK_FAILED"


class Signal(StrEnum):
    """Why a referral was held for review instead of released."""

    SAME_ADDRESS = "SAME_ADDRESS"
    MUTUAL_REFERRAL = "MUTUAL_REFERRAL"


# The states that take one of the referrer's cap slots: a reward on its way, in hand, or
# already spent. Leaving them (reversed, rejected, withheld at release, clawed back) gives the
# slot back, so the cap counts rewards the referrer can still get or has kept.
HOLDS_SLOT = frozenset(
    {
        RewardState.PENDING,
        RewardState.HELD_FOR_REVIEW,
        RewardState.ISSUED,
        RewardState.CLAWBACK_FAILED,
    }
)
# What the referrer received and kept: a user's and the report's "rewards issued".
KEPT = frozenset({RewardState.ISSUED, RewardState.CLAWBACK_FAILED})
# Not yet decided: a user's "rewards pending".
WAITING = frozenset({RewardState.PENDING, RewardState.HELD_FOR_REVIEW})


@dataclass(frozen=True)
class ReferralProgram:
    enabled: bool
    referee: Discount
    reward: Discount
    reward_valid_days: int
    max_rewards_per_referrer: int  # 0: no cap
    reward_hold_seconds: int = DEFAULT_HOLD_SECONDS  # 0: released at the confirm
    max_rewards_per_referrer_per_day: int = 0  # 0: no daily limit


@dataclass(frozen=True)
class PersonalCode:
    """A user's own referral code and what came of it."""

    user_id: str
    code: str
    referred_count: int
    rewards_issued: int  # ISSUED or CLAWBACK_FAILED: received and kept
    rewards_pending: int = 0  # PENDING or HELD_FOR_REVIEW


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
    # The code's owner's status: a blocked or deleted owner's code refers nobody.
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
    if attempt.referrer_status is not UserStatus.ACTIVE:
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


def _limit_problems(valid_days: int, cap: int, hold_seconds: int | None, day_cap: int) -> list[str]:
    problems = []
    if not 1 <= valid_days <= MAX_VALID_DAYS:
        problems.append(f"reward_valid_days: must be between 1 and {MAX_VALID_DAYS}")
    if not 0 <= cap <= MAX_REWARDS_CAP:
        problems.append(f"max_rewards_per_referrer: must be 0 (no cap) to {MAX_REWARDS_CAP}")
    if hold_seconds is not None and not 0 <= hold_seconds <= MAX_HOLD_SECONDS:
        problems.append(f"reward_hold_seconds: must be between 0 and {MAX_HOLD_SECONDS}")
    if not 0 <= day_cap <= MAX_REWARDS_CAP:
        problems.append(
            f"max_rewards_per_referrer_per_day: must be 0 (no limit) to {MAX_REWARDS_CAP}"
        )
    return problems


def check_program(
    enabled: bool,
    referee: tuple[Discount | None, str],
    reward: tuple[Discount | None, str],
    reward_valid_days: int,
    max_rewards_per_referrer: int,
    reward_hold_seconds: int | None = None,
    max_rewards_per_referrer_per_day: int = 0,
) -> ReferralProgram:
    """The program an admin asked for; INVALID_ARGUMENT naming every bad field. An unset
    hold (None) is the default hold, 14 days."""
    problems = _discount_problems("referee", *referee) + _discount_problems("reward", *reward)
    problems += _limit_problems(
        reward_valid_days,
        max_rewards_per_referrer,
        reward_hold_seconds,
        max_rewards_per_referrer_per_day,
    )
    if problems:
        raise InvalidArgument([FieldViolation(*p.split(": ", 1)) for p in problems])
    assert referee[0] is not None and reward[0] is not None
    hold = DEFAULT_HOLD_SECONDS if reward_hold_seconds is None else reward_hold_seconds
    return ReferralProgram(
        enabled,
        referee[0],
        reward[0],
        reward_valid_days,
        max_rewards_per_referrer,
        hold,
        max_rewards_per_referrer_per_day,
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
    rewards_by_state: dict[str, int] = field(default_factory=dict)
    held_by_signal: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ReferralReward:
    """One confirmed referral and its reward, as the admin's list and review show it."""

    purchase_id: str
    referrer_id: str
    referee_id: str
    code: str  # the referral code the referee used
    state: RewardState
    signal: Signal | None = None
    withheld_reason: str | None = None
    reward_code: str | None = None
    created_at: datetime | None = None
    release_at: datetime | None = None
    reviewed_by: str | None = None
    reviewed_at: datetime | None = None

    @property
    def referral(self) -> Referral:
        return Referral(self.purchase_id, self.referee_id, self.referrer_id)


@dataclass(frozen=True)
class SignalFacts:
    """What the fraud signals look at for one referral (addresses only as keyed hashes)."""

    owner_address_hash: bytes | None  # where the referrer was first given the code
    referee_address_hash: bytes | None  # where the referee used it
    mutual: bool  # a live referral the other way: the referee had referred the referrer


@dataclass(frozen=True)
class RewardTotals:
    by_state: dict[str, int]
    held_by_signal: dict[str, int]  # held for review now


def address_hash(key: bytes, address: str) -> bytes:
    """A keyed hash of a client address: equal addresses compare equal, but the table holds
    nothing that gives the address back (HMAC-SHA256, so guessing needs the key)."""
    return hmac.new(key, address.encode(), hashlib.sha256).digest()


def signal_of(facts: SignalFacts) -> Signal | None:
    """The fraud signal that holds a referral for review, if any (same address first). A
    missing hash (a code made before hashes were kept) is no signal."""
    owner, referee = facts.owner_address_hash, facts.referee_address_hash
    if owner is not None and referee is not None and hmac.compare_digest(owner, referee):
        return Signal.SAME_ADDRESS
    if facts.mutual:
        return Signal.MUTUAL_REFERRAL
    return None


def settled_state(withheld: Withheld | None, signal: Signal | None) -> RewardState:
    """The reward's state at the confirm (released at once later if the hold is 0)."""
    if withheld is not None:
        return RewardState.WITHHELD
    if signal is not None:
        return RewardState.HELD_FOR_REVIEW
    return RewardState.PENDING


def release_at(program: ReferralProgram, confirmed_at: datetime) -> datetime:
    return confirmed_at + timedelta(seconds=program.reward_hold_seconds)


def releases_at_once(program: ReferralProgram) -> bool:
    return program.reward_hold_seconds == 0


def refund_state(state: RewardState, code_used: bool) -> RewardState | None:
    """Where a refund of the referee's purchase moves the reward; None: it stays. Before the
    release nothing exists to take back; after it, the code is taken back unless used."""
    if state in (RewardState.PENDING, RewardState.HELD_FOR_REVIEW):
        return RewardState.REVERSED
    if state is RewardState.ISSUED:
        return RewardState.CLAWBACK_FAILED if code_used else RewardState.CLAWED_BACK
    return None


def review_state(state: RewardState, approve: bool) -> RewardState | None:
    """An admin's review: only a held referral moves (a second review answers it as it
    stands). Approval releases it (the referrer's status may still withhold it)."""
    if state is not RewardState.HELD_FOR_REVIEW:
        return None
    return RewardState.ISSUED if approve else RewardState.REJECTED


def gives_slot_back(before: RewardState, after: RewardState) -> bool:
    return before in HOLDS_SLOT and after not in HOLDS_SLOT
