"""Promo codes: their normalised text, generated codes, and where a code stands now."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from loyalty_service.domain.pricing import Discount
from loyalty_service.domain.schedule import Duration

# No look-alikes: no 0/O, no 1/I/L. 31 symbols: log2(31) = 4.95 bits per random character.
CHARSET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
# A code typed by an admin: at least 6 characters (at most 31 bits even if random; such codes
# are meant to be announced, and the guessing throttle is what protects them).
MIN_CODE_LENGTH = 6
MAX_CODE_LENGTH = 64
CODE_PATTERN = re.compile(rf"^[A-Z0-9_-]{{{MIN_CODE_LENGTH},{MAX_CODE_LENGTH}}}$")
# Generated codes: at least 10 random characters (49.5 bits), 12 by default (59.4 bits), so
# that guessing at the throttle's pace finds nothing in any realistic time (docs/loyalty.md).
MIN_RANDOM_LENGTH = 10
MAX_RANDOM_LENGTH = 32
DEFAULT_RANDOM_LENGTH = 12
DEFAULT_CURRENCY = "RUB"


class CodeTaken(Exception):
    """A code with this text exists already."""


class CodeStatus(StrEnum):
    ACTIVE = "ACTIVE"
    NOT_STARTED = "NOT_STARTED"
    EXPIRED = "EXPIRED"
    EXHAUSTED = "EXHAUSTED"
    DEACTIVATED = "DEACTIVATED"


@dataclass(frozen=True)
class PromoCode:
    code: str
    discount: Discount
    currency: str
    starts_at: datetime | None
    ends_at: datetime | None
    max_uses: int  # 0 = unlimited
    uses: int
    per_user_limit: int  # 0 = unlimited
    tariff_ids: tuple[str, ...]
    all_users: bool
    deactivated: bool
    duration: Duration = Duration.ONCE
    duration_periods: int = 0
    max_discount: int | None = None  # percent codes: the largest discount
    budget: int | None = None  # the most the live purchases' discounts may add up to
    budget_spent: int = 0  # what they add up to now
    first_purchase_only: bool = False
    min_price: int | None = None  # the least base price a tariff must have
    refund_returns_use: bool = True  # a refund gives the use and the budget back
    # The owner of a personal referral code; None for every other code.
    referrer_id: str | None = None
    description: str = ""
    created_at: datetime | None = None
    # The audience beyond all_users (loaded where a code is shown, not where it is applied).
    user_ids: tuple[str, ...] = ()
    group_ids: tuple[str, ...] = ()
    # The campaign the code belongs to (every code has one), its status (ACTIVE, PAUSED,
    # ENDED), and the campaign-wide uses and money left (None: the campaign has no such limit).
    campaign_id: str = ""
    campaign_status: str = "ACTIVE"
    campaign_uses_left: int | None = None
    campaign_budget_left: int | None = None

    @property
    def uses_left(self) -> int | None:
        return None if self.max_uses == 0 else max(self.max_uses - self.uses, 0)

    @property
    def budget_left(self) -> int | None:
        return None if self.budget is None else max(self.budget - self.budget_spent, 0)


def normalize_code(text: str) -> str:
    return text.strip().upper()


def random_code(prefix: str, length: int) -> str:
    return prefix + "".join(secrets.choice(CHARSET) for _ in range(length))


def status_of(code: PromoCode, now: datetime) -> CodeStatus:
    # An ended campaign's codes are deactivated with it, all at once.
    if code.deactivated or code.campaign_status == "ENDED":
        return CodeStatus.DEACTIVATED
    if code.starts_at is not None and now < code.starts_at:
        return CodeStatus.NOT_STARTED
    if code.ends_at is not None and now >= code.ends_at:
        return CodeStatus.EXPIRED
    if code.uses_left == 0:
        return CodeStatus.EXHAUSTED
    return CodeStatus.ACTIVE


def user_uses_left(code: PromoCode, user_uses: int) -> int | None:
    if code.per_user_limit == 0:
        return None
    return max(code.per_user_limit - user_uses, 0)


@dataclass(frozen=True)
class ActiveCode:
    """A code a user could apply now, with how often they have used it."""

    code: PromoCode
    user_uses: int

    @property
    def uses_left_for_user(self) -> int | None:
        return user_uses_left(self.code, self.user_uses)
