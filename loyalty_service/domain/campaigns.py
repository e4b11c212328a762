"""Campaigns: many codes under one set of rules, one status and campaign-wide limits.

A campaign owns the rules a code used to carry alone (its spec but the code text); each code
it makes gets a copy of them, and a use limit of its own (1: single-use codes). A campaign's
rules never change after it is created, so the copies cannot drift from it. Its use limit and
money budget hold over all its codes together; they are split over counter slots
(`slot_split`) so that a hot campaign does not queue every use on one row."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from common.errors import ErrorKind, FieldViolation, InvalidArgument, ServiceError
from loyalty_service.domain import specs
from loyalty_service.domain.codes import (
    CODE_PATTERN,
    DEFAULT_RANDOM_LENGTH,
    MAX_CODE_LENGTH,
    MAX_RANDOM_LENGTH,
    MIN_CODE_LENGTH,
    MIN_RANDOM_LENGTH,
    normalize_code,
)
from loyalty_service.domain.reasons import DOMAIN
from loyalty_service.domain.reports import DayStats

MAX_GENERATED = 100_000
MAX_NAMED_CODES = 1_000
MAX_NAME = 200
MAX_SLOTS = 32
MAX_REPORT_RANGE_DAYS = 400
DEFAULT_REPORT_DAYS = 30
# Large enough for any real campaign, small enough that no sum of them overflows a bigint.
MAX_MONEY_MINOR = 10**15
MAX_INT32 = 2**31 - 1
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", re.ASCII)


class CodeSpaceExhausted(Exception):
    """Codes kept colliding with existing ones (or a named code exists): nothing was added."""


class CampaignStatus(StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    ENDED = "ENDED"


class CampaignKind(StrEnum):
    CAMPAIGN = "CAMPAIGN"  # made by CreateCampaign
    CODE = "CODE"  # the one-code campaign of a code made the old way (or migrated)
    REFERRAL = "REFERRAL"  # a personal referral code's: never paused nor ended


@dataclass(frozen=True)
class CampaignInput:
    name: str
    rules: specs.CodeSpec
    max_uses: int = 0  # over all its codes; 0: none
    budget: specs.MoneyInput | None = None  # over all its codes; None: none
    description: str = ""


@dataclass(frozen=True)
class Campaign:
    campaign_id: str
    name: str
    description: str
    kind: CampaignKind
    status: CampaignStatus
    rules: specs.CodeSpec
    max_uses: int
    budget: int | None
    uses_taken: int  # over all its codes
    budget_spent: int  # the discounts of its codes' live purchases
    code_count: int
    created_by: str
    created_at: datetime
    updated_at: datetime

    @property
    def uses_left(self) -> int | None:
        return None if self.max_uses == 0 else max(self.max_uses - self.uses_taken, 0)

    @property
    def budget_left(self) -> int | None:
        return None if self.budget is None else max(self.budget - self.budget_spent, 0)


@dataclass(frozen=True)
class AuditEntry:
    audit_id: int
    campaign_id: str
    action: str  # CREATED, PAUSED, RESUMED, ENDED, CODES_ADDED, CODE_DEACTIVATED, ...
    code: str
    detail: str
    actor_id: str
    at: datetime


@dataclass(frozen=True)
class CampaignReport:
    campaign: Campaign
    first_day: date
    last_day: date
    purchases_by_status: dict[str, int]  # of the purchases made in the range
    rejections_by_reason: dict[str, int]  # in the range
    daily: list[DayStats]
    refunds_by_day: dict[str, int]

    @property
    def uses(self) -> int:
        return sum(day.uses for day in self.daily)

    @property
    def confirms(self) -> int:
        return sum(day.confirms for day in self.daily)

    @property
    def cancels(self) -> int:
        return sum(day.cancels for day in self.daily)

    @property
    def refunds(self) -> int:
        return sum(self.refunds_by_day.values())

    @property
    def discount_granted(self) -> int:
        return sum(day.discount_granted for day in self.daily)


@dataclass(frozen=True)
class NewCodes:
    """What AddCampaignCodes asks for: named codes, or a generated batch."""

    named: tuple[str, ...]
    count: int
    prefix: str
    length: int
    max_uses_per_code: int

    @property
    def generated(self) -> bool:
        return not self.named


def _violation(problems: list[FieldViolation], name: str, description: str) -> None:
    problems.append(FieldViolation(name, description))


def _limits(problems: list[FieldViolation], campaign: CampaignInput) -> None:
    if not 0 <= campaign.max_uses <= MAX_INT32:
        _violation(problems, "max_uses", "must be 0 (no limit) or more")
    if campaign.budget is not None:
        if not 1 <= campaign.budget.amount_minor <= MAX_MONEY_MINOR:
            _violation(problems, "budget.amount_minor", f"must be 1 to {MAX_MONEY_MINOR}")
        if campaign.budget.currency.upper() not in ("", "RUB"):
            _violation(problems, "budget.currency", "must be RUB (the tariffs' currency)")


def _rules(problems: list[FieldViolation], rules: specs.CodeSpec) -> None:
    if rules.code:
        _violation(problems, "rules.code", "must be empty: codes are added to the campaign")
    if rules.max_uses:
        _violation(problems, "rules.max_uses", "use max_uses (all codes) or max_uses_per_code")
    if rules.budget is not None:
        _violation(problems, "rules.budget", "use the campaign's budget")
    try:
        specs.check_spec(rules)
    except InvalidArgument as error:
        problems.extend(FieldViolation(f"rules.{v.field}", v.description) for v in error.violations)


def check_campaign(campaign: CampaignInput) -> None:
    """INVALID_ARGUMENT naming every bad field of a new campaign."""
    problems: list[FieldViolation] = []
    if not campaign.name.strip() or len(campaign.name) > MAX_NAME:
        _violation(problems, "name", f"must be 1 to {MAX_NAME} characters")
    if len(campaign.description) > specs.MAX_DESCRIPTION:
        _violation(problems, "description", f"at most {specs.MAX_DESCRIPTION} characters")
    _limits(problems, campaign)
    _rules(problems, campaign.rules)
    if problems:
        raise InvalidArgument(problems)


def slot_count(max_uses: int) -> int:
    """32 slots, or one per use when the campaign allows fewer uses than that."""
    return MAX_SLOTS if max_uses == 0 else max(1, min(MAX_SLOTS, max_uses))


def _share(total: int, slots: int, slot: int) -> int:
    return total // slots + (1 if slot < total % slots else 0)


def slot_split(max_uses: int, budget: int | None) -> list[tuple[int | None, int | None]]:
    """Each slot's (uses left, money left) for a new campaign; [] when it has no limits.
    The shares add up to the limits exactly."""
    if max_uses == 0 and budget is None:
        return []
    slots = slot_count(max_uses)
    return [
        (
            _share(max_uses, slots, slot) if max_uses else None,
            None if budget is None else _share(budget, slots, slot),
        )
        for slot in range(slots)
    ]


def _named(problems: list[FieldViolation], codes: list[str]) -> tuple[str, ...]:
    named = tuple(normalize_code(c) for c in codes)
    if len(named) > MAX_NAMED_CODES:
        _violation(problems, "codes", f"at most {MAX_NAMED_CODES} codes at once")
    for index, code in enumerate(named):
        if not CODE_PATTERN.match(code):
            _violation(
                problems,
                f"codes[{index}]",
                f"must be {MIN_CODE_LENGTH} to {MAX_CODE_LENGTH} letters, digits, '-' or '_'",
            )
    if len(set(named)) != len(named):
        _violation(problems, "codes", "must not repeat a code")
    return named


def _batch(problems: list[FieldViolation], count: int, prefix: str, length: int) -> int:
    if not 1 <= count <= MAX_GENERATED:
        _violation(problems, "generate.count", f"must be 1 to {MAX_GENERATED}")
    if not specs.PREFIX_PATTERN.match(prefix):
        _violation(problems, "generate.prefix", "must be at most 16 letters, digits, '-' or '_'")
    length = length or DEFAULT_RANDOM_LENGTH
    if not MIN_RANDOM_LENGTH <= length <= MAX_RANDOM_LENGTH:
        _violation(
            problems, "generate.length", f"must be {MIN_RANDOM_LENGTH} to {MAX_RANDOM_LENGTH}"
        )
    return length


def check_new_codes(
    codes: list[str], count: int, prefix: str, length: int, max_uses_per_code: int
) -> NewCodes:
    """Named codes or a generated batch (exactly one of them), each checked."""
    problems: list[FieldViolation] = []
    if bool(codes) == bool(count):
        _violation(problems, "codes", "give either codes or generate.count, not both or none")
    if not 0 <= max_uses_per_code <= MAX_INT32:
        _violation(problems, "max_uses_per_code", "must be 0 (no limit) or more")
    named = _named(problems, codes)
    prefix = normalize_code(prefix)
    length = _batch(problems, count, prefix, length) if count else length
    if problems:
        raise InvalidArgument(problems)
    return NewCodes(named, count, prefix, length, max_uses_per_code)


def _transition_error(campaign: Campaign, wanted: CampaignStatus) -> ServiceError:
    return ServiceError(
        ErrorKind.FAILED_PRECONDITION,
        "CAMPAIGN_ENDED",
        f"campaign {campaign.campaign_id} has ended: it cannot become {wanted.value}",
        DOMAIN,
    )


def next_status(campaign: Campaign, wanted: CampaignStatus) -> CampaignStatus | None:
    """The status to move to (None: it is there already); an ended campaign stays ended."""
    if campaign.status is wanted:
        return None
    if campaign.status is CampaignStatus.ENDED:
        raise _transition_error(campaign, wanted)
    return wanted


def not_found(campaign_id: str) -> ServiceError:
    return ServiceError(
        ErrorKind.NOT_FOUND, "CAMPAIGN_NOT_FOUND", f"no campaign {campaign_id}", DOMAIN
    )


def _day(text: str, name: str) -> date:
    if not _DATE.match(text):
        raise InvalidArgument.of(name, "must be a date YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidArgument.of(name, "must be a date YYYY-MM-DD") from None


def report_range(first: str, last: str, today: date | None = None) -> tuple[date, date]:
    """The UTC days of a report, both included: the last 30 days when not given."""
    today = today or datetime.now(UTC).date()
    end = _day(last, "to") if last else today
    start = _day(first, "from") if first else end - timedelta(days=DEFAULT_REPORT_DAYS - 1)
    if start > end:
        raise InvalidArgument.of("to", "must not be before from")
    if (end - start).days >= MAX_REPORT_RANGE_DAYS:
        raise InvalidArgument.of("from", f"at most {MAX_REPORT_RANGE_DAYS} days at once")
    return start, end
