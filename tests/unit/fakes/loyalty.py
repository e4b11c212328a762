"""Loyalty's unit of work in memory. A transaction works on a copy of the state and keeps it
only when its block ends without an error, as PostgreSQL does. Referral codes are not modelled
(no code here has a referrer): the referral flow is proven by tests/integration."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from common.user_status import UserStatus
from loyalty_service.domain.codes import ActiveCode, CodeStatus, CodeTaken, PromoCode, status_of
from loyalty_service.domain.eligibility import Attempt, Tariff, rejection_reason
from loyalty_service.domain.groups import Group, GroupNameTaken
from loyalty_service.domain.pricing import Discount, DiscountKind, quote
from loyalty_service.domain.purchases import LIVE, Ended, Purchase, PurchaseStatus
from loyalty_service.domain.reasons import Reason, RecordedRejection
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
    is_referral,
)
from loyalty_service.domain.reports import DayStats
from loyalty_service.domain.specs import CodeSpec
from loyalty_service.use_cases.guessing import GuessBudget
from loyalty_service.use_cases.ports import Repositories

MONTHLY = Tariff("monthly", "Monthly", 29900, "RUB", 30)


@dataclass
class State:
    codes: dict[str, PromoCode] = field(default_factory=dict)
    user_uses: dict[tuple[str, str], int] = field(default_factory=dict)
    purchases: dict[str, Purchase] = field(default_factory=dict)
    rejections: list[RecordedRejection] = field(default_factory=list)
    tariffs: dict[str, Tariff] = field(default_factory=lambda: {"monthly": MONTHLY})
    users: dict[str, UserStatus] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)
    outbox: list[str] = field(default_factory=list)  # routing keys
    program: ReferralProgram = field(
        default_factory=lambda: ReferralProgram(
            True,
            Discount(DiscountKind.PERCENT_OFF, 10),
            Discount(DiscountKind.PERCENT_OFF, 50),
            30,
            10,
        )
    )
    rewards: dict[str, ReferralReward] = field(default_factory=dict)
    slots: dict[str, list[date]] = field(default_factory=dict)  # referrer → days slots taken
    refunded_referrals: set[str] = field(default_factory=set)
    signals: dict[str, SignalFacts] = field(default_factory=dict)  # purchase → facts
    owner_hashes: dict[str, bytes] = field(default_factory=dict)
    guess_tokens: dict[str, float] = field(default_factory=dict)  # no refill: no clock here


def _code_of(text: str, spec: CodeSpec, discount: Discount) -> PromoCode:
    return PromoCode(
        code=text,
        discount=discount,
        currency="RUB",
        starts_at=spec.starts_at,
        ends_at=spec.ends_at,
        max_uses=spec.max_uses,
        uses=0,
        per_user_limit=spec.per_user_limit,
        tariff_ids=spec.tariff_ids,
        all_users=spec.all_users,
        deactivated=False,
        duration=spec.duration,
        duration_periods=spec.duration_periods,
        first_purchase_only=spec.first_purchase_only,
        refund_returns_use=spec.refund_returns_use,
        description=spec.description,
        created_at=datetime.now(UTC),
    )


class FakeCodes:
    def __init__(self, state: State) -> None:
        self._s = state

    def _change(self, text: str, **changes: object) -> None:
        self._s.codes[text] = dataclasses.replace(self._s.codes[text], **changes)  # type: ignore[arg-type]

    async def insert(self, code: str, spec: CodeSpec, discount: Discount) -> None:
        if code in self._s.codes:
            raise CodeTaken(code)
        self._s.codes[code] = _code_of(code, spec, discount)

    async def insert_batch(self, texts: list[str], spec: CodeSpec, discount: Discount) -> list[str]:
        fresh = [t for t in texts if t not in self._s.codes]
        for text in fresh:
            self._s.codes[text] = _code_of(text, spec, discount)
        return fresh

    async def add_audience(
        self, texts: list[str], user_ids: list[str], group_ids: list[str]
    ) -> None:
        for text in texts:
            code = self._s.codes[text]
            users = tuple(sorted(set(code.user_ids) | set(user_ids)))
            groups = tuple(sorted(set(code.group_ids) | set(group_ids)))
            self._change(text, user_ids=users, group_ids=groups)

    async def get(self, code: str) -> PromoCode | None:
        return self._s.codes.get(code)

    async def page(
        self, after: str | None, limit: int, query: str, status: str, now: datetime
    ) -> list[PromoCode]:
        found = [
            c
            for text, c in sorted(self._s.codes.items())
            if (after is None or text > after)
            and query in text
            and (not status or status_of(c, now) is CodeStatus(status))
        ]
        return found[:limit]

    async def deactivate(self, code: str) -> bool:
        if code not in self._s.codes:
            return False
        self._change(code, deactivated=True)
        return True

    def _in_audience(self, code: PromoCode, user_id: str) -> bool:
        groups = any(user_id in self._s.members.get(g, set()) for g in code.group_ids)
        return code.all_users or user_id in code.user_ids or groups

    async def attempt(self, code: str, tariff_id: str, user_id: str, now: datetime) -> Attempt:
        found = self._s.codes.get(code)
        bought = any(p.user_id == user_id and p.status in LIVE for p in self._s.purchases.values())
        return Attempt(
            found,
            self._s.tariffs.get(tariff_id),
            self._s.users.get(user_id, UserStatus.ACTIVE),
            found is not None and self._in_audience(found, user_id),
            self._s.user_uses.get((code, user_id), 0),
            now,
            bought,
        )

    async def give_back(self, purchase: Purchase) -> None:
        c = self._s.codes[purchase.code]
        self._change(
            purchase.code, uses=c.uses - 1, budget_spent=c.budget_spent - purchase.discount
        )
        self._s.user_uses[(purchase.code, purchase.user_id)] -= 1

    async def active_for_user(
        self, user_id: str, now: datetime, after: tuple[str, str] | None, limit: int
    ) -> list[ActiveCode]:
        found = [
            ActiveCode(c, self._s.user_uses.get((c.code, user_id), 0))
            for c in self._s.codes.values()
            if status_of(c, now) is CodeStatus.ACTIVE and self._in_audience(c, user_id)
        ]
        return [a for a in found if a.uses_left_for_user != 0][:limit]


class FakePurchases:
    def __init__(self, state: State) -> None:
        self._s = state

    async def by_request(self, user_id: str, request_id: str) -> Purchase | None:
        return next(
            (
                p
                for p in self._s.purchases.values()
                if p.user_id == user_id and p.request_id == request_id
            ),
            None,
        )

    async def get(self, purchase_id: str, *, lock: bool = False) -> Purchase | None:
        return self._s.purchases.get(purchase_id)

    async def set_status(self, purchase_id: str, status: PurchaseStatus) -> Purchase:
        changed = dataclasses.replace(self._s.purchases[purchase_id], status=status)
        self._s.purchases[purchase_id] = changed
        return changed

    async def expire_stale(
        self, older_than: datetime, limit: int, *, give_back: bool
    ) -> list[Ended]:
        stale = [
            p
            for p in self._s.purchases.values()
            if p.status is PurchaseStatus.PENDING and p.created_at < older_than
        ][:limit]
        codes = FakeCodes(self._s)
        for p in stale:
            await self.set_status(p.purchase_id, PurchaseStatus.EXPIRED)
            if give_back:
                await codes.give_back(p)
        return [Ended(self._s.purchases[p.purchase_id], None) for p in stale]

    async def page_for_user(
        self, user_id: str, after: tuple[datetime, str] | None, limit: int
    ) -> list[Purchase]:
        mine = [p for p in self._s.purchases.values() if p.user_id == user_id]
        mine.sort(key=lambda p: (p.created_at, p.purchase_id), reverse=True)
        return [p for p in mine if after is None or (p.created_at, p.purchase_id) < after][:limit]

    async def counts_by_status(self, code: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for p in self._s.purchases.values():
            if p.code == code:
                counts[p.status.value] = counts.get(p.status.value, 0) + 1
        return counts


class FakeRejections:
    def __init__(self, state: State) -> None:
        self._s = state

    async def record(self, user_id: str | None, code: str, tariff_id: str, reason: str) -> None:
        number = len(self._s.rejections) + 1
        now = datetime.now(UTC)
        self._s.rejections.append(RecordedRejection(number, now, user_id, code, tariff_id, reason))

    async def counts_by_reason(self, code: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self._s.rejections:
            if r.code == code:
                counts[r.reason] = counts.get(r.reason, 0) + 1
        return counts

    async def forget_before(self, cutoff: datetime, batch: int) -> int:
        old = [r for r in self._s.rejections if r.occurred_at < cutoff][:batch]
        self._s.rejections = [r for r in self._s.rejections if r not in old]
        return len(old)

    async def drop_months_before(self, cutoff: datetime) -> int:
        """Whole UTC months ending at or before the cutoff, as the partitions are dropped."""

        def month_end(at: datetime) -> datetime:
            first = at.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            return (first + timedelta(days=32)).replace(day=1)

        old = [r for r in self._s.rejections if month_end(r.occurred_at) <= cutoff]
        self._s.rejections = [r for r in self._s.rejections if r not in old]
        return len(old)

    async def page(
        self, code: str, reason: str, before_id: int | None, limit: int
    ) -> list[RecordedRejection]:
        found = [
            r
            for r in reversed(self._s.rejections)
            if (not code or r.code == code)
            and (not reason or r.reason == reason)
            and (before_id is None or r.rejection_id < before_id)
        ]
        return found[:limit]


class FakeUsers:
    def __init__(self, state: State) -> None:
        self._s = state

    async def status_of(self, user_id: str) -> UserStatus:
        return self._s.users.get(user_id, UserStatus.ACTIVE)


class FakeTariffs:
    def __init__(self, state: State) -> None:
        self._s = state

    async def all_tariffs(self) -> list[Tariff]:
        return sorted(self._s.tariffs.values(), key=lambda t: (t.price, t.tariff_id))

    async def missing_ids(self, tariff_ids: list[str]) -> list[str]:
        return [t for t in tariff_ids if t not in self._s.tariffs]


class FakeGroups:
    def __init__(self, state: State) -> None:
        self._s = state

    def _counted(self, group_id: str) -> Group:
        group = self._s.groups[group_id]
        count = len(self._s.members.get(group_id, set()))
        return dataclasses.replace(group, member_count=count)

    async def add_members(self, group_id: str, user_ids: list[str]) -> None:
        self._s.members.setdefault(group_id, set()).update(user_ids)

    async def remove_members(self, group_id: str, user_ids: list[str]) -> None:
        self._s.members.setdefault(group_id, set()).difference_update(user_ids)

    async def create(self, group_id: str, name: str) -> Group:
        if any(g.name.lower() == name.lower() for g in self._s.groups.values()):
            raise GroupNameTaken(name)
        self._s.groups[group_id] = Group(group_id, name, 0, datetime.now(UTC))
        return self._counted(group_id)

    async def get(self, group_id: str) -> Group | None:
        return self._counted(group_id) if group_id in self._s.groups else None

    async def page(self, after_name: str | None, limit: int) -> list[Group]:
        ordered = sorted(self._s.groups, key=lambda g: self._s.groups[g].name.lower())
        named = [self._counted(g) for g in ordered]
        return [g for g in named if after_name is None or g.name.lower() > after_name][:limit]

    async def members_page(self, group_id: str, after: str | None, limit: int) -> list[str]:
        members = sorted(self._s.members.get(group_id, set()))
        return [m for m in members if after is None or m > after][:limit]

    async def members_of(self, group_ids: list[str]) -> list[str]:
        return sorted(set().union(*(self._s.members.get(g, set()) for g in group_ids)))

    async def missing_ids(self, group_ids: list[str]) -> list[str]:
        return [g for g in group_ids if g not in self._s.groups]


class NoReferrals:
    """No code here has a referrer, so only the calls every confirm and cancel make (and the
    program, which the rewards' use cases read) are answered; anything else would mean a
    referral code slipped into a unit test."""

    def __init__(self, state: State) -> None:
        self._s = state

    async def complete(self, purchase_id: str) -> Referral | None:
        return None

    async def end(self, purchase_id: str, status: str) -> str | None:
        return None

    def _unexpected(self) -> AssertionError:
        return AssertionError("referral codes are tested in tests/integration")

    async def program(self) -> ReferralProgram:
        return self._s.program

    async def set_program(self, value: ReferralProgram) -> ReferralProgram:
        self._s.program = value
        return value

    async def personal_code(self, user_id: str) -> PersonalCode | None:
        raise self._unexpected()

    async def insert_code_row(self, code: str, user_id: str) -> bool:
        raise self._unexpected()

    async def claim_personal_code(self, user_id: str, code: str) -> bool:
        raise self._unexpected()

    async def totals(self, top: int) -> ReferralTotals:
        raise self._unexpected()


class FakeRedemption:
    """ApplyPromoCode's and UsePromoCode's one store call, over the state. The decision is the
    domain's (eligibility.rejection_reason, pricing.quote: the reference the SQL functions are
    tested against), and refusals are recorded; taking the use then only counts it, as the
    decision already checked the counters against this very state (no other caller runs in
    between, so the SQL's atomic re-checks have nothing to catch here)."""

    def __init__(self, state: State) -> None:
        self._s = state

    async def _refuse(self, reason: Reason, user_id: str, code: str, tariff_id: str) -> None:
        await FakeRejections(self._s).record(user_id, code, tariff_id, reason.value)

    def _short(self, budget: GuessBudget | None) -> bool:
        """The caller is out of guesses (a bucket absent is full)."""
        held = self._s.guess_tokens
        return budget is not None and any(
            held.get(b, cap) < 1 for b, cap in zip(budget.buckets, budget.capacities, strict=True)
        )

    def _decide(self, attempt: Attempt) -> Decision:
        assert not is_referral(attempt.code), "referral codes are tested in tests/integration"
        reason = rejection_reason(attempt)
        if reason is not None:
            return Decision(reason)
        found, tariff = attempt.code, attempt.tariff
        assert found is not None and tariff is not None
        price = quote(tariff.price, found.discount, found.max_discount)
        return Decision(None, found.code, tariff, price, found.duration, found.duration_periods)

    async def apply(
        self,
        code: str,
        tariff_id: str,
        user_id: str,
        now: datetime,
        budget: GuessBudget | None = None,
    ) -> Decision:
        """As loyalty_apply: a caller out of guesses is refused before the look-up, and a miss
        spends a guess (or, none left, is refused unrecorded)."""
        throttled = Decision(Reason.TOO_MANY_PROMO_ATTEMPTS)
        if self._short(budget):
            return throttled
        decision = self._decide(await FakeCodes(self._s).attempt(code, tariff_id, user_id, now))
        if budget is not None and decision.reason and decision.reason.value in budget.misses:
            if self._short(budget):
                return throttled
            for bucket, cap in zip(budget.buckets, budget.capacities, strict=True):
                self._s.guess_tokens[bucket] = self._s.guess_tokens.get(bucket, cap) - 1
        if decision.reason is not None:
            await self._refuse(decision.reason, user_id, code, tariff_id)
        return decision

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
    ) -> UseOutcome:
        # The request-id replay, as loyalty_use answers it (tested in tests/integration).
        purchases = FakePurchases(self._s)
        if request_id and (earlier := await purchases.by_request(user_id, request_id)):
            return UseOutcome(None, earlier, False)
        decision = await self.apply(code, tariff_id, user_id, now, budget)
        if decision.reason is not None:
            return UseOutcome(decision.reason)
        return UseOutcome(None, _take(self._s, decision, user_id, request_id, purchase_id), True)

    async def guess_wait(self, budget: GuessBudget) -> float:
        return 60.0 if self._short(budget) else 0.0


def _take(
    state: State, decision: Decision, user_id: str, request_id: str | None, purchase_id: str
) -> Purchase:
    """Counts the use the decision allowed (the code's, its budget, the user's) and makes the
    PENDING purchase."""
    assert decision.tariff is not None and decision.price is not None
    code, price = state.codes[decision.code], decision.price
    state.codes[code.code] = dataclasses.replace(
        code, uses=code.uses + 1, budget_spent=code.budget_spent + price.discount
    )
    held = state.user_uses.get((code.code, user_id), 0)
    state.user_uses[(code.code, user_id)] = held + 1
    now = datetime.now(UTC)
    made = Purchase(
        purchase_id,
        user_id,
        code.code,
        decision.tariff.tariff_id,
        price.base,
        price.discount,
        price.final,
        decision.tariff.currency,
        PurchaseStatus.PENDING,
        request_id,
        decision.duration,
        decision.duration_periods,
        now,
        now,
    )
    state.purchases[purchase_id] = made
    return made


class FakePartitions:
    async def ensure(self, now: datetime) -> int:
        return 0


class FakeSettlement:
    def __init__(self, state: State) -> None:
        self._s = state

    async def refund(self, purchase_id: str, reason: str) -> Purchase:
        return await FakePurchases(self._s).set_status(purchase_id, PurchaseStatus.REFUNDED)

    async def refund_returns_use(self, code: str) -> bool:
        found = self._s.codes.get(code)
        return True if found is None else found.refund_returns_use


class FakeReports:
    async def daily(self, code: str, days: int) -> list[DayStats]:
        return []


class FakeOutbox:
    def __init__(self, state: State) -> None:
        self._s = state

    async def add(self, event_id: str, routing_key: str, payload: bytes) -> None:
        self._s.outbox.append(routing_key)


class FakeRewards:
    """Referral rewards in memory, by the same conditional moves as the SQL (the races are
    tests/integration's)."""

    def __init__(self, state: State) -> None:
        self._s = state

    async def take_slot(
        self, referrer_id: str, cap: int, day_cap: int, day: date
    ) -> Withheld | None:
        taken = self._s.slots.setdefault(referrer_id, [])
        if cap and len(taken) >= cap:
            return Withheld.REFERRAL_REWARD_CAP_REACHED
        if day_cap and taken.count(day) >= day_cap:
            return Withheld.REFERRAL_DAILY_CAP_REACHED
        taken.append(day)
        return None

    async def give_slot_back(self, referrer_id: str, taken_on: date) -> None:
        taken = self._s.slots.get(referrer_id, [])
        taken.remove(taken_on if taken_on in taken else taken[-1])

    async def record(
        self,
        referral: Referral,
        state: RewardState,
        *,
        withheld: Withheld | None = None,
        signal: Signal | None = None,
        release_at: datetime | None = None,
    ) -> None:
        assert referral.purchase_id not in self._s.rewards, "one reward row per referral"
        self._s.rewards[referral.purchase_id] = ReferralReward(
            referral.purchase_id,
            referral.referrer_id,
            referral.referee_id,
            "REFCODE",
            state,
            signal,
            withheld.value if withheld else None,
            created_at=datetime.now(UTC),
            release_at=release_at,
        )

    async def get(self, purchase_id: str, *, lock: bool = False) -> ReferralReward | None:
        return self._s.rewards.get(purchase_id)

    async def claim_due(self, now: datetime, limit: int) -> list[ReferralReward]:
        due = [
            r
            for r in self._s.rewards.values()
            if r.state is RewardState.PENDING and r.release_at and r.release_at <= now
        ]
        return sorted(due, key=lambda r: r.release_at or now)[:limit]

    async def move(
        self,
        purchase_id: str,
        before: RewardState,
        after: RewardState,
        *,
        code: str | None = None,
        withheld: Withheld | None = None,
        reviewed_by: str | None = None,
    ) -> bool:
        found = self._s.rewards.get(purchase_id)
        if found is None or found.state is not before:
            return False
        self._s.rewards[purchase_id] = dataclasses.replace(
            found,
            state=after,
            reward_code=code or found.reward_code,
            withheld_reason=withheld.value if withheld else found.withheld_reason,
            reviewed_by=reviewed_by or found.reviewed_by,
            reviewed_at=datetime.now(UTC) if reviewed_by else found.reviewed_at,
        )
        return True

    async def refund_referral(self, purchase_id: str) -> Referral | None:
        found = self._s.rewards.get(purchase_id)
        if found is None or purchase_id in self._s.refunded_referrals:
            return None
        self._s.refunded_referrals.add(purchase_id)
        return found.referral

    async def take_back_code(self, code: str) -> bool:
        live = (PurchaseStatus.PENDING, PurchaseStatus.COMPLETED)
        used = any(p.code == code and p.status in live for p in self._s.purchases.values())
        self._s.codes[code] = dataclasses.replace(self._s.codes[code], deactivated=True)
        return not used

    async def signal_facts(self, purchase_id: str) -> SignalFacts:
        return self._s.signals.get(purchase_id, SignalFacts(None, None, False))

    async def note_owner_address(self, user_id: str, address_hash: bytes) -> None:
        self._s.owner_hashes.setdefault(user_id, address_hash)

    async def held_page(
        self, after: tuple[datetime, str] | None, limit: int
    ) -> list[ReferralReward]:
        held = [r for r in self._s.rewards.values() if r.state is RewardState.HELD_FOR_REVIEW]
        ordered = sorted(held, key=lambda r: (r.created_at, r.purchase_id))
        if after is not None:
            ordered = [r for r in ordered if (r.created_at, r.purchase_id) > after]
        return ordered[:limit]

    async def totals(self) -> RewardTotals:
        by_state: dict[str, int] = {}
        held: dict[str, int] = {}
        for r in self._s.rewards.values():
            by_state[r.state.value] = by_state.get(r.state.value, 0) + 1
            if r.state is RewardState.HELD_FOR_REVIEW and r.signal:
                held[r.signal.value] = held.get(r.signal.value, 0) + 1
        return RewardTotals(by_state, held)


def _repositories(state: State) -> Repositories:
    return Repositories(
        FakeCodes(state),
        FakePurchases(state),
        FakeRejections(state),
        FakeUsers(state),
        FakeTariffs(state),
        FakeGroups(state),
        NoReferrals(state),
        FakeReports(),
        FakeOutbox(state),
        FakeRedemption(state),
        FakePartitions(),
        FakeSettlement(state),
        FakeRewards(state),
    )


class FakeLoyaltyStore:
    def __init__(self) -> None:
        self.state = State()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Repositories]:
        working = copy.deepcopy(self.state)
        yield _repositories(working)
        self.state = working

    @property
    def single(self) -> Repositories:
        return _repositories(self.state)
