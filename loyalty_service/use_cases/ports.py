"""What loyalty's use cases need from the store: one small repository per aggregate and a
unit of work that groups them in a transaction, so unit tests pass in-memory fakes and the
store alone knows SQL."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from common.user_status import UserStatus
from loyalty_service.domain.campaigns import (
    AuditEntry,
    Campaign,
    CampaignInput,
    CampaignReport,
    CampaignStatus,
)
from loyalty_service.domain.codes import ActiveCode, PromoCode
from loyalty_service.domain.eligibility import Tariff
from loyalty_service.domain.groups import Group
from loyalty_service.domain.pricing import Discount
from loyalty_service.domain.purchases import Ended, Purchase, PurchaseStatus
from loyalty_service.domain.reasons import RecordedRejection
from loyalty_service.domain.redemption import Decision, UseOutcome
from loyalty_service.domain.referrals import (
    PersonalCode,
    Referral,
    ReferralProgram,
    ReferralReward,
    ReferralTotals,
    RewardState,
    RewardTotals,
    Signal,
    SignalFacts,
    Withheld,
)
from loyalty_service.domain.reports import DayStats
from loyalty_service.domain.specs import CodeSpec
from loyalty_service.use_cases.guessing import GuessBudget


class CodesRepository(Protocol):
    async def insert(self, code: str, spec: CodeSpec, discount: Discount) -> None: ...

    async def insert_batch(
        self, texts: list[str], spec: CodeSpec, discount: Discount
    ) -> list[str]: ...

    async def add_audience(
        self, texts: list[str], user_ids: list[str], group_ids: list[str]
    ) -> None: ...

    async def get(self, code: str) -> PromoCode | None: ...

    async def page(
        self, after: str | None, limit: int, query: str, status: str, now: datetime
    ) -> list[PromoCode]: ...

    async def deactivate(self, code: str) -> bool: ...

    async def give_back(self, purchase: Purchase) -> None: ...

    async def active_for_user(
        self, user_id: str, now: datetime, after: tuple[str, str] | None, limit: int
    ) -> list[ActiveCode]: ...


class PurchasesRepository(Protocol):
    async def by_request(self, user_id: str, request_id: str) -> Purchase | None:
        """The purchase an earlier use with this request id made: for a caller who is not let
        through to a use (RedemptionRepository.use answers the replay itself)."""
        ...

    async def get(self, purchase_id: str, *, lock: bool = False) -> Purchase | None: ...

    async def set_status(self, purchase_id: str, status: PurchaseStatus) -> Purchase: ...

    async def expire_stale(
        self, older_than: datetime, limit: int, *, give_back: bool
    ) -> list[Ended]: ...

    async def page_for_user(
        self, user_id: str, after: tuple[datetime, str] | None, limit: int
    ) -> list[Purchase]: ...

    async def counts_by_status(self, code: str) -> dict[str, int]: ...


class RejectionsRepository(Protocol):
    async def counts_by_reason(self, code: str) -> dict[str, int]: ...

    async def forget_before(self, cutoff: datetime, batch: int) -> int: ...

    async def drop_months_before(self, cutoff: datetime) -> int: ...

    async def page(
        self, code: str, reason: str, before_id: int | None, limit: int
    ) -> list[RecordedRejection]: ...


class UsersRepository(Protocol):
    async def status_of(self, user_id: str) -> UserStatus: ...


class TariffsRepository(Protocol):
    async def all_tariffs(self) -> list[Tariff]: ...

    async def missing_ids(self, tariff_ids: list[str]) -> list[str]: ...


class GroupsRepository(Protocol):
    async def add_members(self, group_id: str, user_ids: list[str]) -> None: ...

    async def remove_members(self, group_id: str, user_ids: list[str]) -> None: ...

    async def create(self, group_id: str, name: str) -> Group: ...

    async def get(self, group_id: str) -> Group | None: ...

    async def page(self, after_name: str | None, limit: int) -> list[Group]: ...

    async def members_page(self, group_id: str, after: str | None, limit: int) -> list[str]: ...

    async def members_of(self, group_ids: list[str]) -> list[str]: ...

    async def missing_ids(self, group_ids: list[str]) -> list[str]: ...


class ReferralsRepository(Protocol):
    async def program(self) -> ReferralProgram: ...

    async def set_program(self, value: ReferralProgram) -> ReferralProgram: ...

    async def personal_code(self, user_id: str) -> PersonalCode | None: ...

    async def insert_code_row(self, code: str, user_id: str) -> bool: ...

    async def claim_personal_code(self, user_id: str, code: str) -> bool: ...

    async def end(self, purchase_id: str, status: str) -> str | None: ...

    async def complete(self, purchase_id: str) -> Referral | None: ...

    async def totals(self, top: int) -> ReferralTotals: ...


class ReferralRewardsRepository(Protocol):
    """A referral's reward from the confirm on: held, released, reversed, clawed back,
    reviewed. Every move is conditional on the state it leaves."""

    async def take_slot(
        self, referrer_id: str, cap: int, day_cap: int, day: date
    ) -> Withheld | None: ...

    async def give_slot_back(self, referrer_id: str, taken_on: date) -> None: ...

    async def record(
        self,
        referral: Referral,
        state: RewardState,
        *,
        withheld: Withheld | None = None,
        signal: Signal | None = None,
        release_at: datetime | None = None,
    ) -> None: ...

    async def get(self, purchase_id: str, *, lock: bool = False) -> ReferralReward | None: ...

    async def claim_due(self, now: datetime, limit: int) -> list[ReferralReward]: ...

    async def move(
        self,
        purchase_id: str,
        before: RewardState,
        after: RewardState,
        *,
        code: str | None = None,
        withheld: Withheld | None = None,
        reviewed_by: str | None = None,
    ) -> bool: ...

    async def refund_referral(self, purchase_id: str) -> Referral | None: ...

    async def take_back_code(self, code: str) -> bool: ...

    async def signal_facts(self, purchase_id: str) -> SignalFacts: ...

    async def note_owner_address(self, user_id: str, address_hash: bytes) -> None: ...

    async def held_page(
        self, after: tuple[datetime, str] | None, limit: int
    ) -> list[ReferralReward]: ...

    async def totals(self) -> RewardTotals: ...


class RedemptionRepository(Protocol):
    """ApplyPromoCode's and UsePromoCode's whole work, one call (one round trip) each: the
    decision, the code's and the user's use, the referral, the purchase, and the rejection
    record when refused; a repeated request id is answered with the purchase it made, and
    takes nothing. The domain rules are the reference it is tested against. With a `budget`,
    the guessing throttle is checked and spent in that same call (use_cases/guessing.py): a
    refusal for it is the reason TOO_MANY_PROMO_ATTEMPTS, recorded nowhere."""

    async def apply(
        self,
        code: str,
        tariff_id: str,
        user_id: str,
        now: datetime,
        budget: GuessBudget | None = None,
    ) -> Decision: ...

    async def use(
        self,
        code: str,
        tariff_id: str,
        user_id: str,
        request_id: str | None,
        purchase_id: str,
        now: datetime,
        referee_address: bytes | None = None,
        budget: GuessBudget | None = None,
    ) -> UseOutcome: ...

    async def guess_wait(self, budget: GuessBudget) -> float:
        """Seconds until the guessing buckets allow a look-up again."""
        ...


class PartitionsRepository(Protocol):
    async def ensure(self, now: datetime) -> int: ...


class ReportsRepository(Protocol):
    async def daily(self, code: str, days: int) -> list[DayStats]: ...


class SettlementRepository(Protocol):
    """Refunds: the payment side taking a completed purchase's money back."""

    async def refund(self, purchase_id: str, reason: str) -> Purchase: ...

    async def refund_returns_use(self, code: str) -> bool: ...


class OutboxRepository(Protocol):
    async def add(self, event_id: str, routing_key: str, payload: bytes) -> None: ...


@dataclass(frozen=True)
class Repositories:
    codes: CodesRepository
    purchases: PurchasesRepository
    rejections: RejectionsRepository
    users: UsersRepository
    tariffs: TariffsRepository
    groups: GroupsRepository
    referrals: ReferralsRepository
    reports: ReportsRepository
    outbox: OutboxRepository
    redemption: RedemptionRepository
    partitions: PartitionsRepository
    settlement: SettlementRepository
    rewards: ReferralRewardsRepository


class UnitOfWork(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Repositories]:
        """Repositories whose writes commit together when the block ends without error."""
        ...

    @property
    def single(self) -> Repositories:
        """Repositories outside a transaction: each call is one statement of its own."""
        ...


class CampaignsRepository(Protocol):
    """Campaigns (store/campaigns.py): each writing method is one transaction of its own."""

    async def create(
        self,
        campaign_id: str,
        campaign: CampaignInput,
        slots: list[tuple[int | None, int | None]],
        actor: str,
    ) -> None: ...

    async def get(self, campaign_id: str) -> Campaign | None: ...

    async def page(
        self,
        query: str,
        status: str,
        created_from: datetime | None,
        created_to: datetime | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Campaign]: ...

    async def set_status(
        self, campaign_id: str, current: CampaignStatus, wanted: CampaignStatus, actor: str
    ) -> bool: ...

    async def add_codes(
        self,
        campaign_id: str,
        make: Callable[[int], list[str]],
        count: int,
        max_uses: int,
        actor: str,
        rounds: int,
    ) -> list[str]: ...

    async def campaign_of(self, code: str) -> Campaign | None: ...

    async def set_code_active(self, code: str, active: bool, actor: str) -> bool: ...

    async def codes(self, campaign_id: str, after: str | None, limit: int) -> list[PromoCode]: ...

    async def report(self, campaign: Campaign, first: date, last: date) -> CampaignReport: ...

    async def audit(self, campaign_id: str, after: int | None, limit: int) -> list[AuditEntry]: ...
