"""What an admin asks for when creating codes, and the checks it must pass."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from common.errors import FieldViolation, InvalidArgument
from loyalty_service.domain.codes import (
    CODE_PATTERN,
    DEFAULT_CURRENCY,
    DEFAULT_RANDOM_LENGTH,
    MAX_CODE_LENGTH,
    MAX_RANDOM_LENGTH,
    MIN_CODE_LENGTH,
    MIN_RANDOM_LENGTH,
    PromoCode,
    normalize_code,
)
from loyalty_service.domain.pricing import Discount, DiscountKind
from loyalty_service.domain.schedule import MAX_DURATION_PERIODS, Duration

MAX_BATCH = 10_000
PREFIX_PATTERN = re.compile(r"^[A-Z0-9_-]{0,16}$")
MAX_DESCRIPTION = 500


@dataclass(frozen=True)
class MoneyInput:
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class CodeSpec:
    code: str = ""
    # Exactly one of these three.
    fixed_price: MoneyInput | None = None
    percent_off: int | None = None
    amount_off: MoneyInput | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    max_uses: int = 0
    per_user_limit: int = 1
    tariff_ids: tuple[str, ...] = ()
    all_users: bool = False
    user_ids: tuple[str, ...] = ()
    group_ids: tuple[str, ...] = ()
    description: str = ""
    duration: Duration = Duration.ONCE
    duration_periods: int = 0
    max_discount: MoneyInput | None = None
    budget: MoneyInput | None = None
    first_purchase_only: bool = False
    min_price: MoneyInput | None = None
    # Whether a refund of a completed purchase gives the use and the budget back.
    refund_returns_use: bool = True


@dataclass
class _Problems:
    found: list[FieldViolation] = field(default_factory=list)

    def add(self, name: str, description: str) -> None:
        self.found.append(FieldViolation(name, description))

    def raise_any(self) -> None:
        if self.found:
            raise InvalidArgument(self.found)


def _money(problems: _Problems, name: str, money: MoneyInput, minimum: int) -> None:
    if money.amount_minor < minimum:
        problems.add(f"{name}.amount_minor", f"must be at least {minimum}")
    if money.currency.upper() not in ("", DEFAULT_CURRENCY):
        problems.add(f"{name}.currency", f"must be {DEFAULT_CURRENCY} (the tariffs' currency)")


def _discount(problems: _Problems, spec: CodeSpec) -> None:
    given = [d for d in (spec.fixed_price, spec.percent_off, spec.amount_off) if d is not None]
    if len(given) != 1:
        problems.add("discount", "give exactly one of fixed_price, percent_off, amount_off")
    if spec.fixed_price is not None:
        _money(problems, "fixed_price", spec.fixed_price, 0)
    if spec.amount_off is not None:
        _money(problems, "amount_off", spec.amount_off, 1)
    if spec.percent_off is not None and not 1 <= spec.percent_off <= 100:
        problems.add("percent_off", "must be between 1 and 100")


def _ids(problems: _Problems, name: str, values: tuple[str, ...]) -> None:
    for index, value in enumerate(values):
        try:
            uuid.UUID(value)
        except ValueError:
            problems.add(f"{name}[{index}]", "must be a UUID")


def _window_and_limits(problems: _Problems, spec: CodeSpec) -> None:
    if spec.starts_at and spec.ends_at and spec.ends_at <= spec.starts_at:
        problems.add("ends_at", "must be after starts_at")
    if spec.max_uses < 0:
        problems.add("max_uses", "must be 0 (unlimited) or more")
    if spec.per_user_limit < 0:
        problems.add("per_user_limit", "must be 0 (unlimited) or more")
    if len(spec.description) > MAX_DESCRIPTION:
        problems.add("description", f"must be at most {MAX_DESCRIPTION} characters")


def _duration(problems: _Problems, spec: CodeSpec) -> None:
    if spec.duration is Duration.REPEATING:
        if not 1 <= spec.duration_periods <= MAX_DURATION_PERIODS:
            problems.add("duration_periods", f"must be 1 to {MAX_DURATION_PERIODS} for REPEATING")
    elif spec.duration_periods != 0:
        problems.add("duration_periods", "only a REPEATING duration takes periods")


def _campaign_rules(problems: _Problems, spec: CodeSpec) -> None:
    _duration(problems, spec)
    if spec.max_discount is not None:
        _money(problems, "max_discount", spec.max_discount, 1)
        if spec.percent_off is None:
            problems.add("max_discount", "only a percent_off discount takes a cap")
    if spec.budget is not None:
        _money(problems, "budget", spec.budget, 1)
    if spec.min_price is not None:
        _money(problems, "min_price", spec.min_price, 0)


def _checked(spec: CodeSpec, problems: _Problems) -> None:
    _discount(problems, spec)
    _campaign_rules(problems, spec)
    _window_and_limits(problems, spec)
    _ids(problems, "user_ids", spec.user_ids)
    _ids(problems, "group_ids", spec.group_ids)
    if any(not t for t in spec.tariff_ids):
        problems.add("tariff_ids", "must not contain empty ids")


def check_spec(spec: CodeSpec) -> str:
    """The normalised code text ('' to generate one); INVALID_ARGUMENT naming every bad field."""
    problems = _Problems()
    code = normalize_code(spec.code)
    if code and not CODE_PATTERN.match(code):
        problems.add(
            "code", f"must be {MIN_CODE_LENGTH} to {MAX_CODE_LENGTH} letters, digits, '-' or '_'"
        )
    _checked(spec, problems)
    problems.raise_any()
    return code


def check_batch(spec: CodeSpec, count: int, prefix: str, length: int) -> tuple[str, int]:
    """The normalised prefix and random-part length of a batch."""
    problems = _Problems()
    if spec.code:
        problems.add("spec.code", "must be empty: every code of a batch is generated")
    if not 1 <= count <= MAX_BATCH:
        problems.add("count", f"must be between 1 and {MAX_BATCH}")
    prefix = normalize_code(prefix)
    if not PREFIX_PATTERN.match(prefix):
        problems.add("prefix", "must be at most 16 letters, digits, '-' or '_'")
    length = length or DEFAULT_RANDOM_LENGTH
    if not MIN_RANDOM_LENGTH <= length <= MAX_RANDOM_LENGTH:
        problems.add(
            "length",
            f"must be between {MIN_RANDOM_LENGTH} and {MAX_RANDOM_LENGTH}"
            f" (0 means {DEFAULT_RANDOM_LENGTH})",
        )
    _checked(spec, problems)
    problems.raise_any()
    return prefix, length


def discount_of(spec: CodeSpec) -> Discount:
    if spec.fixed_price is not None:
        return Discount(DiscountKind.FIXED_PRICE, spec.fixed_price.amount_minor)
    if spec.amount_off is not None:
        return Discount(DiscountKind.AMOUNT_OFF, spec.amount_off.amount_minor)
    assert spec.percent_off is not None
    return Discount(DiscountKind.PERCENT_OFF, spec.percent_off)


def _stored_money(amount: int | None, currency: str) -> MoneyInput | None:
    return None if amount is None else MoneyInput(amount, currency)


def spec_of_code(code: PromoCode) -> CodeSpec:
    """A stored code as the spec that would create it again (for export)."""
    kind, value, currency = code.discount.kind, code.discount.value, code.currency
    return CodeSpec(
        code=code.code,
        fixed_price=_stored_money(value, currency) if kind is DiscountKind.FIXED_PRICE else None,
        percent_off=value if kind is DiscountKind.PERCENT_OFF else None,
        amount_off=_stored_money(value, currency) if kind is DiscountKind.AMOUNT_OFF else None,
        starts_at=code.starts_at,
        ends_at=code.ends_at,
        max_uses=code.max_uses,
        per_user_limit=code.per_user_limit,
        tariff_ids=code.tariff_ids,
        all_users=code.all_users,
        user_ids=code.user_ids,
        group_ids=code.group_ids,
        description=code.description,
        duration=code.duration,
        duration_periods=code.duration_periods,
        max_discount=_stored_money(code.max_discount, currency),
        budget=_stored_money(code.budget, currency),
        first_purchase_only=code.first_purchase_only,
        refund_returns_use=code.refund_returns_use,
        min_price=_stored_money(code.min_price, currency),
    )
