"""The referral rules, with no I/O: who may use a referral code, and what the referrer gets."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from common.errors import InvalidArgument
from common.user_status import UserStatus
from loyalty_service.domain.codes import PromoCode
from loyalty_service.domain.eligibility import Tariff
from loyalty_service.domain.pricing import Discount, DiscountKind
from loyalty_service.domain.reasons import KIND, Reason
from loyalty_service.domain.referrals import (
    HOLDS_SLOT,
    RefereeHistory,
    ReferralAttempt,
    ReferralProgram,
    RewardState,
    Signal,
    SignalFacts,
    Withheld,
    address_hash,
    check_program,
    gives_slot_back,
    is_referral,
    refund_state,
    rejection_reason,
    release_at,
    releases_at_once,
    review_state,
    reward_for,
    settled_state,
    signal_of,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PERCENT_20 = Discount(DiscountKind.PERCENT_OFF, 20)
PROGRAM = ReferralProgram(True, PERCENT_20, Discount(DiscountKind.AMOUNT_OFF, 5000), 30, 0)
CODE = PromoCode(
    "ABCDEFGH", Discount(DiscountKind.PERCENT_OFF, 0), "RUB", None, None, 0, 3, 0, (), False,
    False, referrer_id="alice",
)  # fmt: skip
FRESH = RefereeHistory(already_referred=False, has_live_purchase=False)
OK = ReferralAttempt(
    CODE,
    "alice",
    "bob",
    UserStatus.ACTIVE,
    Tariff("monthly", "M", 29900, "RUB", 30),
    PROGRAM,
    FRESH,
)


def test_a_new_user_may_use_someone_elses_code() -> None:
    assert rejection_reason(OK) is None
    assert is_referral(CODE) and not is_referral(replace(CODE, referrer_id=None))
    assert not is_referral(None)


@pytest.mark.parametrize(
    ("attempt", "reason"),
    [
        (replace(OK, user_status=UserStatus.BLOCKED), Reason.USER_BLOCKED),
        (replace(OK, user_status=UserStatus.DELETED), Reason.USER_DELETED),
        (replace(OK, code=replace(CODE, deactivated=True)), Reason.PROMO_CODE_INACTIVE),
        (replace(OK, referrer_status=UserStatus.BLOCKED), Reason.REFERRAL_CODE_INACTIVE),
        (replace(OK, referrer_status=UserStatus.DELETED), Reason.REFERRAL_CODE_INACTIVE),
        (replace(OK, program=replace(PROGRAM, enabled=False)), Reason.REFERRAL_PROGRAM_OFF),
        (replace(OK, tariff=None), Reason.TARIFF_NOT_FOUND),
        (replace(OK, user_id="alice"), Reason.REFERRAL_SELF_USE),
        (replace(OK, history=RefereeHistory(True, True)), Reason.REFERRAL_ALREADY_REFERRED),
        (replace(OK, history=RefereeHistory(False, True)), Reason.REFERRAL_NOT_FIRST_PURCHASE),
    ],
)
def test_each_refusal(attempt: ReferralAttempt, reason: Reason) -> None:
    assert rejection_reason(attempt) is reason


def test_the_first_failing_check_is_reported() -> None:
    everything_wrong = replace(
        OK,
        user_id="alice",
        program=replace(PROGRAM, enabled=False),
        history=RefereeHistory(True, True),
    )
    assert rejection_reason(everything_wrong) is Reason.REFERRAL_PROGRAM_OFF
    assert rejection_reason(replace(everything_wrong, program=PROGRAM)) is (
        Reason.REFERRAL_SELF_USE
    )


def test_new_reasons_are_failed_precondition() -> None:
    for reason in (
        Reason.REFERRAL_SELF_USE,
        Reason.REFERRAL_NOT_FIRST_PURCHASE,
        Reason.REFERRAL_ALREADY_REFERRED,
        Reason.REFERRAL_PROGRAM_OFF,
        Reason.REFERRAL_CODE_INACTIVE,
    ):
        assert KIND[reason].value == "FAILED_PRECONDITION"


@pytest.mark.parametrize(
    ("status", "withheld"),
    [
        (UserStatus.ACTIVE, None),
        (UserStatus.BLOCKED, Withheld.REFERRER_BLOCKED),
        (UserStatus.DELETED, Withheld.REFERRER_DELETED),
    ],
)
def test_reward_follows_the_referrers_status(status: UserStatus, withheld: Withheld | None) -> None:
    reward = reward_for(PROGRAM, status, NOW)
    assert reward.withheld is withheld
    assert reward.discount == PROGRAM.reward
    assert reward.ends_at == NOW + timedelta(days=30)


def _checked(**changes: object) -> ReferralProgram:
    values: dict[str, object] = {
        "enabled": True,
        "referee": (PERCENT_20, ""),
        "reward": (Discount(DiscountKind.FIXED_PRICE, 0), "RUB"),
        "reward_valid_days": 7,
        "max_rewards_per_referrer": 5,
    } | changes
    return check_program(**values)  # type: ignore[arg-type]


def test_a_valid_program() -> None:
    program = _checked()
    assert program.reward == Discount(DiscountKind.FIXED_PRICE, 0)  # a free period is fine
    assert (program.reward_valid_days, program.max_rewards_per_referrer) == (7, 5)


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        ({"referee": (None, "")}, {"referee"}),
        ({"referee": (Discount(DiscountKind.PERCENT_OFF, 0), "")}, {"referee.percent_off"}),
        ({"referee": (Discount(DiscountKind.PERCENT_OFF, 101), "")}, {"referee.percent_off"}),
        (
            {"reward": (Discount(DiscountKind.AMOUNT_OFF, 0), "")},
            {"reward.amount_off.amount_minor"},
        ),
        (
            {"reward": (Discount(DiscountKind.FIXED_PRICE, -1), "")},
            {"reward.fixed_price.amount_minor"},
        ),
        ({"reward": (Discount(DiscountKind.AMOUNT_OFF, 10), "EUR")}, {"reward"}),
        ({"reward_valid_days": 0}, {"reward_valid_days"}),
        ({"reward_valid_days": 3651}, {"reward_valid_days"}),
        ({"max_rewards_per_referrer": -1}, {"max_rewards_per_referrer"}),
        ({"reward_hold_seconds": -1}, {"reward_hold_seconds"}),
        ({"reward_hold_seconds": 31_536_001}, {"reward_hold_seconds"}),
        ({"max_rewards_per_referrer_per_day": -1}, {"max_rewards_per_referrer_per_day"}),
    ],
)
def test_bad_programs_name_their_fields(changes: dict[str, object], fields: set[str]) -> None:
    with pytest.raises(InvalidArgument) as raised:
        _checked(**changes)
    assert {v.field for v in raised.value.violations} == fields


def test_the_hold_defaults_to_14_days_and_0_releases_at_once() -> None:
    assert _checked().reward_hold_seconds == 1_209_600
    assert _checked().max_rewards_per_referrer_per_day == 0
    program = _checked(reward_hold_seconds=0, max_rewards_per_referrer_per_day=3)
    assert releases_at_once(program) and program.max_rewards_per_referrer_per_day == 3
    held = _checked(reward_hold_seconds=60)
    assert not releases_at_once(held) and release_at(held, NOW) == NOW + timedelta(minutes=1)


@pytest.mark.parametrize(
    ("withheld", "signal", "state"),
    [
        (None, None, RewardState.PENDING),
        (None, Signal.SAME_ADDRESS, RewardState.HELD_FOR_REVIEW),
        (Withheld.REFERRAL_DAILY_CAP_REACHED, None, RewardState.WITHHELD),
        (Withheld.REFERRER_BLOCKED, Signal.MUTUAL_REFERRAL, RewardState.WITHHELD),
    ],
)
def test_the_state_at_the_confirm(
    withheld: Withheld | None, signal: Signal | None, state: RewardState
) -> None:
    assert settled_state(withheld, signal) is state


KEY = b"k" * 32
HOME, CAFE = address_hash(KEY, "198.51.100.1"), address_hash(KEY, "203.0.113.5")


@pytest.mark.parametrize(
    ("facts", "signal"),
    [
        (SignalFacts(HOME, HOME, False), Signal.SAME_ADDRESS),
        (SignalFacts(HOME, HOME, True), Signal.SAME_ADDRESS),  # the first signal names it
        (SignalFacts(HOME, CAFE, True), Signal.MUTUAL_REFERRAL),
        (SignalFacts(HOME, CAFE, False), None),
        (SignalFacts(None, HOME, False), None),  # a code made before hashes were kept
        (SignalFacts(HOME, None, False), None),
    ],
)
def test_fraud_signals(facts: SignalFacts, signal: Signal | None) -> None:
    assert signal_of(facts) is signal


def test_address_hashes_are_keyed() -> None:
    assert address_hash(KEY, "198.51.100.1") == HOME and len(HOME) == 32
    assert address_hash(b"another key, as long", "198.51.100.1") != HOME
    assert b"198.51.100.1" not in HOME


@pytest.mark.parametrize(
    ("state", "used", "after"),
    [
        (RewardState.PENDING, False, RewardState.REVERSED),
        (RewardState.HELD_FOR_REVIEW, False, RewardState.REVERSED),
        (RewardState.ISSUED, False, RewardState.CLAWED_BACK),
        (RewardState.ISSUED, True, RewardState.CLAWBACK_FAILED),
        (RewardState.WITHHELD, False, None),
        (RewardState.REJECTED, False, None),
        (RewardState.REVERSED, False, None),
        (RewardState.CLAWED_BACK, False, None),
        (RewardState.CLAWBACK_FAILED, True, None),
    ],
)
def test_a_refund_moves_the_reward(
    state: RewardState, used: bool, after: RewardState | None
) -> None:
    assert refund_state(state, used) is after


def test_only_a_held_referral_is_reviewed() -> None:
    assert review_state(RewardState.HELD_FOR_REVIEW, True) is RewardState.ISSUED
    assert review_state(RewardState.HELD_FOR_REVIEW, False) is RewardState.REJECTED
    for state in set(RewardState) - {RewardState.HELD_FOR_REVIEW}:
        assert review_state(state, True) is None and review_state(state, False) is None


def test_leaving_the_slot_holding_states_gives_the_slot_back() -> None:
    assert gives_slot_back(RewardState.PENDING, RewardState.REVERSED)
    assert gives_slot_back(RewardState.HELD_FOR_REVIEW, RewardState.REJECTED)
    assert gives_slot_back(RewardState.PENDING, RewardState.WITHHELD)
    assert gives_slot_back(RewardState.ISSUED, RewardState.CLAWED_BACK)
    assert not gives_slot_back(RewardState.PENDING, RewardState.ISSUED)
    assert not gives_slot_back(RewardState.ISSUED, RewardState.CLAWBACK_FAILED)
    assert RewardState.WITHHELD not in HOLDS_SLOT
