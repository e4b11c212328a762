"""Loyalty's unit of work in memory. A transaction works on a copy of the state and keeps it
only when its block ends without an error, as PostgreSQL does. Referral codes are not modelled
(no code here has a referrer): the referral flow is proven by tests/integration."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from common.user_status import UserStatus
from loyalty_service.domain.codes import ActiveCode, CodeStatus, CodeTaken, PromoCode, status_of
from loyalty_service.domain.eligibility import Attempt, Tariff, rejection_reason
from loyalty_service.domain.groups import Group, GroupNameTaken
from loyalty_service.domain.pricing import Discount, Price, quote
from loyalty_service.domain.purchases import Ended, Purchase, PurchaseStatus
from loyalty_service.domain.reasons import Reason, RecordedRejection
from loyalty_service.domain.redemption import Decision, UseOutcome
from loyalty_service.domain.referrals import (
    PersonalCode,
    RefereeHistory,
    Referral,
    ReferralProgram,
    ReferralTotals,
)
from loyalty_service.domain.reports import DayStats
from loyalty_service.domain.schedule import Duration
from loyalty_service.domain.specs import CodeSpec
from loyalty_service.use_cases.ports import Repositories

LIVE = (PurchaseStatus.PENDING, PurchaseStatus.COMPLETED)
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

    async def take_use(self, code: str, discount: int) -> bool:
        c = self._s.codes[code]
        budget_ok = c.budget is None or c.budget_spent + discount <= c.budget
        if (c.max_uses and c.uses >= c.max_uses) or not budget_ok:
            return False
        self._change(code, uses=c.uses + 1, budget_spent=c.budget_spent + discount)
        return True

    async def out_of_uses(self, code: str) -> bool:
        c = self._s.codes[code]
        return c.max_uses > 0 and c.uses >= c.max_uses

    async def lock_first_purchase(self, user_id: str, purchase_id: str) -> bool:
        return not any(
            p.user_id == user_id and p.purchase_id != purchase_id and p.status in LIVE
            for p in self._s.purchases.values()
        )

    async def take_user_use(self, code: str, user_id: str, limit: int) -> bool:
        used = self._s.user_uses.get((code, user_id), 0)
        if limit and used >= limit:
            return False
        self._s.user_uses[(code, user_id)] = used + 1
        return True

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

    async def insert(
        self,
        purchase_id: str,
        user_id: str,
        code: str,
        tariff: Tariff,
        price: Price,
        request_id: str | None,
        duration: tuple[str, int] = ("ONCE", 0),
    ) -> Purchase | None:
        if request_id and await self.by_request(user_id, request_id):
            return None
        now = datetime.now(UTC)
        made = Purchase(
            purchase_id,
            user_id,
            code,
            tariff.tariff_id,
            price.base,
            price.discount,
            price.final,
            tariff.currency,
            PurchaseStatus.PENDING,
            request_id,
            Duration(duration[0]),
            duration[1],
            now,
            now,
        )
        self._s.purchases[purchase_id] = made
        return made

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
    """No code here has a referrer, so only the calls every confirm and cancel make are
    answered; anything else would mean a referral code slipped into a unit test."""

    async def complete(self, purchase_id: str) -> Referral | None:
        return None

    async def end(self, purchase_id: str, status: str) -> str | None:
        return None

    def _unexpected(self) -> AssertionError:
        return AssertionError("referral codes are tested in tests/integration")

    async def program(self) -> ReferralProgram:
        raise self._unexpected()

    async def set_program(self, value: ReferralProgram) -> ReferralProgram:
        raise self._unexpected()

    async def personal_code(self, user_id: str) -> PersonalCode | None:
        raise self._unexpected()

    async def insert_code_row(self, code: str, user_id: str) -> bool:
        raise self._unexpected()

    async def claim_personal_code(self, user_id: str, code: str) -> bool:
        raise self._unexpected()

    async def referee_history(self, user_id: str) -> RefereeHistory:
        raise self._unexpected()

    async def take_reward(self, referrer_id: str, cap: int) -> bool:
        raise self._unexpected()

    async def record_outcome(
        self, referral: Referral, code: str | None, withheld: str | None
    ) -> None:
        raise self._unexpected()

    async def totals(self, top: int) -> ReferralTotals:
        raise self._unexpected()


class FakeRedemption:
    """ApplyPromoCode's and UsePromoCode's one store call, over the state, by the domain's
    rules (the reference the SQL functions are tested against): the decision, then the use
    taken all or nothing, and the rejection recorded when refused."""

    def __init__(self, state: State) -> None:
        self._s = state

    async def _refuse(self, reason: Reason, user_id: str, code: str, tariff_id: str) -> None:
        await FakeRejections(self._s).record(user_id, code, tariff_id, reason.value)

    async def apply(self, code: str, tariff_id: str, user_id: str, now: datetime) -> Decision:
        attempt = await FakeCodes(self._s).attempt(code, tariff_id, user_id, now)
        reason = rejection_reason(attempt)
        if reason is not None:
            await self._refuse(reason, user_id, code, tariff_id)
            return Decision(reason)
        found, tariff = attempt.code, attempt.tariff
        assert found is not None and tariff is not None
        price = quote(tariff.price, found.discount, found.max_discount)
        return Decision(None, found.code, tariff, price, found.duration, found.duration_periods)

    async def use(
        self,
        code: str,
        tariff_id: str,
        user_id: str,
        request_id: str | None,
        purchase_id: str,
        now: datetime,
    ) -> UseOutcome:
        if request_id:
            earlier = await FakePurchases(self._s).by_request(user_id, request_id)
            if earlier is not None:
                return UseOutcome(None, earlier, False)
        decision = await self.apply(code, tariff_id, user_id, now)
        if decision.reason is not None:
            return UseOutcome(decision.reason)
        working = copy.deepcopy(self._s)
        made, reason = await _take(working, decision, user_id, request_id, purchase_id)
        if reason is not None:
            await self._refuse(reason, user_id, code, tariff_id)
            return UseOutcome(reason)
        vars(self._s).update(vars(working))  # the transaction commits
        return UseOutcome(None, made, True)


async def _take(
    state: State, decision: Decision, user_id: str, request_id: str | None, purchase_id: str
) -> tuple[Purchase | None, Reason | None]:
    """The taking steps in the store's order; the first that fails is the reason."""
    codes, code = FakeCodes(state), state.codes[decision.code]
    assert decision.tariff is not None and decision.price is not None
    duration = (decision.duration.value, decision.duration_periods)
    made = await FakePurchases(state).insert(
        purchase_id, user_id, code.code, decision.tariff, decision.price, request_id, duration
    )
    if code.first_purchase_only and not await codes.lock_first_purchase(user_id, purchase_id):
        return None, Reason.PROMO_CODE_FIRST_PURCHASE_ONLY
    if not await codes.take_use(code.code, decision.price.discount):
        exhausted = await codes.out_of_uses(code.code)
        return None, Reason.PROMO_CODE_EXHAUSTED if exhausted else Reason.PROMO_CODE_BUDGET_SPENT
    if not await codes.take_user_use(code.code, user_id, code.per_user_limit):
        return None, Reason.PROMO_CODE_USER_LIMIT_REACHED
    return made, None


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


def _repositories(state: State) -> Repositories:
    return Repositories(
        FakeCodes(state),
        FakePurchases(state),
        FakeRejections(state),
        FakeUsers(state),
        FakeTariffs(state),
        FakeGroups(state),
        NoReferrals(),
        FakeReports(),
        FakeOutbox(state),
        FakeRedemption(state),
        FakePartitions(),
        FakeSettlement(state),
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
