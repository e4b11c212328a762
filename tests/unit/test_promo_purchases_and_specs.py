from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.errors import InvalidArgument
from loyalty_service.domain.codes import (
    CHARSET,
    DEFAULT_RANDOM_LENGTH,
    MIN_RANDOM_LENGTH,
    random_code,
)
from loyalty_service.domain.purchases import (
    PurchaseStatus,
    can_move,
    check_cancel,
    check_confirm,
    check_refund,
    gives_use_back,
)
from loyalty_service.domain.reasons import Rejection
from loyalty_service.domain.specs import CodeSpec, MoneyInput, check_batch, check_spec

P = PurchaseStatus


def test_transitions() -> None:
    assert can_move(P.PENDING, P.COMPLETED) and not gives_use_back(P.PENDING, P.COMPLETED)
    assert gives_use_back(P.PENDING, P.CANCELLED) and gives_use_back(P.PENDING, P.EXPIRED)
    assert can_move(P.COMPLETED, P.REFUNDED) and gives_use_back(P.COMPLETED, P.REFUNDED)
    assert not gives_use_back(P.COMPLETED, P.REFUNDED, refund_returns_use=False)
    for target in P:
        assert can_move(P.COMPLETED, target) == (target is P.REFUNDED)
    for final in (P.CANCELLED, P.EXPIRED, P.REFUNDED):
        for target in P:
            assert not can_move(final, target)


def test_refund_check() -> None:
    assert check_refund(P.COMPLETED) and not check_refund(P.REFUNDED)
    for status in (P.PENDING, P.CANCELLED, P.EXPIRED):
        with pytest.raises(Rejection) as raised:
            check_refund(status)
        assert raised.value.reason == "PURCHASE_NOT_REFUNDABLE"


def test_cancel_and_confirm_checks() -> None:
    assert check_cancel(P.PENDING) and not check_cancel(P.CANCELLED)
    assert check_confirm(P.PENDING) and not check_confirm(P.COMPLETED)
    for status in (P.COMPLETED, P.EXPIRED):
        with pytest.raises(Rejection) as raised:
            check_cancel(status)
        assert raised.value.reason == "PURCHASE_NOT_CANCELLABLE"
    for status in (P.CANCELLED, P.EXPIRED):
        with pytest.raises(Rejection):
            check_confirm(status)


def _fields(spec: CodeSpec) -> set[str]:
    with pytest.raises(InvalidArgument) as raised:
        check_spec(spec)
    return {v.field for v in raised.value.violations}


def test_specs() -> None:
    assert check_spec(CodeSpec(code=" summer-24 ", percent_off=5)) == "SUMMER-24"
    assert check_spec(CodeSpec(percent_off=5)) == ""
    assert _fields(CodeSpec()) == {"discount"}
    assert _fields(CodeSpec(percent_off=5, amount_off=MoneyInput(5, ""))) == {"discount"}
    assert _fields(CodeSpec(code="ab", percent_off=5)) == {"code"}
    assert _fields(CodeSpec(fixed_price=MoneyInput(-1, "EUR"))) == {
        "fixed_price.amount_minor",
        "fixed_price.currency",
    }
    assert _fields(CodeSpec(amount_off=MoneyInput(0, "RUB"))) == {"amount_off.amount_minor"}
    later, earlier = datetime(2027, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    assert _fields(CodeSpec(percent_off=1, starts_at=later, ends_at=earlier)) == {"ends_at"}
    assert _fields(CodeSpec(percent_off=1, user_ids=(str(uuid.uuid4()), "x"))) == {"user_ids[1]"}


def test_batches() -> None:
    assert check_batch(CodeSpec(percent_off=5), 10, "vip-", 0) == ("VIP-", 12)
    for too_short in (4, 9):  # under 10 random characters (49.5 bits) is guessable
        with pytest.raises(InvalidArgument):
            check_batch(CodeSpec(percent_off=5), 10, "vip-", too_short)
    with pytest.raises(InvalidArgument) as raised:
        check_batch(CodeSpec(code="X", percent_off=5), 0, "bad prefix", 99)
    assert {v.field for v in raised.value.violations} == {"spec.code", "count", "prefix", "length"}


@given(prefix=st.text(alphabet="ABC-", max_size=5), length=st.integers(4, 32))
def test_generated_codes_use_no_look_alikes(prefix: str, length: int) -> None:
    code = random_code(prefix, length)
    assert code.startswith(prefix) and len(code) == len(prefix) + length
    assert set(code[len(prefix) :]) <= set(CHARSET)
    assert not set("0O1IL") & set(CHARSET)


def test_codes_have_a_minimum_entropy() -> None:
    assert math.log2(len(CHARSET)) * MIN_RANDOM_LENGTH > 49
    assert math.log2(len(CHARSET)) * DEFAULT_RANDOM_LENGTH > 59
    assert _fields(CodeSpec(code="ABCDE", percent_off=5)) == {"code"}
    assert check_spec(CodeSpec(code="abcdef", percent_off=5)) == "ABCDEF"
