from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from common.errors import ErrorKind
from common.user_status import UserStatus
from loyalty_service.domain.codes import CodeStatus, PromoCode, status_of, user_uses_left
from loyalty_service.domain.eligibility import Attempt, Tariff, rejection_reason
from loyalty_service.domain.pricing import Discount, DiscountKind
from loyalty_service.domain.reasons import KIND, Reason, Rejection

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
MONTHLY = Tariff("monthly", "Monthly", 29900, "RUB", 30)
CODE = PromoCode(
    code="SPRING",
    discount=Discount(DiscountKind.PERCENT_OFF, 10),
    currency="RUB",
    starts_at=NOW - timedelta(days=1),
    ends_at=NOW + timedelta(days=1),
    max_uses=10,
    uses=0,
    per_user_limit=1,
    tariff_ids=(),
    all_users=True,
    deactivated=False,
)
OK = Attempt(CODE, MONTHLY, UserStatus.ACTIVE, True, 0, NOW)


def test_an_eligible_attempt_has_no_reason() -> None:
    assert rejection_reason(OK) is None


@pytest.mark.parametrize(
    ("attempt", "reason"),
    [
        (replace(OK, code=None), Reason.PROMO_CODE_NOT_FOUND),
        (replace(OK, user_status=UserStatus.BLOCKED), Reason.USER_BLOCKED),
        (replace(OK, user_status=UserStatus.DELETED), Reason.USER_DELETED),
        (replace(OK, code=replace(CODE, deactivated=True)), Reason.PROMO_CODE_INACTIVE),
        (
            replace(OK, code=replace(CODE, starts_at=NOW + timedelta(seconds=1))),
            Reason.PROMO_CODE_NOT_STARTED,
        ),
        (replace(OK, code=replace(CODE, ends_at=NOW)), Reason.PROMO_CODE_EXPIRED),
        (replace(OK, tariff=None), Reason.TARIFF_NOT_FOUND),
        (replace(OK, code=replace(CODE, tariff_ids=("yearly",))), Reason.PROMO_CODE_NOT_FOR_TARIFF),
        (replace(OK, code=replace(CODE, currency="USD")), Reason.PROMO_CODE_NOT_FOR_TARIFF),
        (replace(OK, in_audience=False), Reason.PROMO_CODE_NOT_FOR_USER),
        (replace(OK, code=replace(CODE, uses=10)), Reason.PROMO_CODE_EXHAUSTED),
        (replace(OK, user_uses=1), Reason.PROMO_CODE_USER_LIMIT_REACHED),
    ],
)
def test_each_reason(attempt: Attempt, reason: Reason) -> None:
    assert rejection_reason(attempt) is reason


def test_the_first_failing_check_wins() -> None:
    everything_wrong = Attempt(
        replace(CODE, deactivated=True, uses=10), None, UserStatus.BLOCKED, False, 5, NOW
    )
    assert rejection_reason(everything_wrong) is Reason.USER_BLOCKED
    active = replace(everything_wrong, user_status=UserStatus.ACTIVE)
    # Outside the audience a user learns nothing more about the code, not even that it is off.
    assert rejection_reason(active) is Reason.PROMO_CODE_NOT_FOR_USER
    assert rejection_reason(replace(active, in_audience=True)) is Reason.PROMO_CODE_INACTIVE


def test_unlimited_codes_and_users() -> None:
    unlimited = replace(CODE, max_uses=0, uses=10**6, per_user_limit=0)
    assert rejection_reason(replace(OK, code=unlimited, user_uses=10**6)) is None
    assert unlimited.uses_left is None and user_uses_left(unlimited, 5) is None
    assert user_uses_left(CODE, 0) == 1


def test_code_status() -> None:
    assert status_of(CODE, NOW) is CodeStatus.ACTIVE
    assert status_of(replace(CODE, uses=10), NOW) is CodeStatus.EXHAUSTED
    assert status_of(replace(CODE, deactivated=True), NOW) is CodeStatus.DEACTIVATED
    assert status_of(CODE, NOW - timedelta(days=2)) is CodeStatus.NOT_STARTED
    assert status_of(CODE, NOW + timedelta(days=2)) is CodeStatus.EXPIRED
    assert status_of(replace(CODE, starts_at=None, ends_at=None), NOW) is CodeStatus.ACTIVE


def test_reason_codes_follow_the_contract() -> None:
    denied = {Reason.PROMO_CODE_NOT_FOR_USER, Reason.USER_BLOCKED, Reason.USER_DELETED}
    missing = {Reason.PROMO_CODE_NOT_FOUND, Reason.TARIFF_NOT_FOUND, Reason.PURCHASE_NOT_FOUND}
    for reason in denied:
        assert KIND[reason] is ErrorKind.PERMISSION_DENIED
    for reason in missing:
        assert KIND[reason] is ErrorKind.NOT_FOUND
    error = Rejection(Reason.PROMO_CODE_EXPIRED)
    assert (error.kind, error.reason, error.domain) == (
        ErrorKind.FAILED_PRECONDITION,
        "PROMO_CODE_EXPIRED",
        "promo.loyalty",
    )
