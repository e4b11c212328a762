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
    RefereeHistory,
    ReferralAttempt,
    ReferralProgram,
    Withheld,
    check_program,
    is_referral,
    rejection_reason,
    reward_for,
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
    ],
)
def test_bad_programs_name_their_fields(changes: dict[str, object], fields: set[str]) -> None:
    with pytest.raises(InvalidArgument) as raised:
        _checked(**changes)
    assert {v.field for v in raised.value.violations} == fields
