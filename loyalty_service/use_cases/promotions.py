"""The user-facing use cases: quote a tariff with a code, redeem it, confirm or cancel."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from common.access.access_tokens import Identity
from common.access.scopes import PURCHASES_SETTLE
from common.errors import ServiceError
from common.telemetry.logs import get_logger
from common.telemetry.trace_context import domain_step
from common.user_status import UserStatus
from loyalty_service import metrics
from loyalty_service.domain import purchases as lifecycle
from loyalty_service.domain.codes import ActiveCode
from loyalty_service.domain.eligibility import Tariff
from loyalty_service.domain.pricing import Price
from loyalty_service.domain.purchases import Purchase, PurchaseStatus
from loyalty_service.domain.reasons import Reason, Rejection
from loyalty_service.domain.redemption import Decision, UseOutcome
from loyalty_service.domain.schedule import PricePeriod, schedule
from loyalty_service.use_cases import events, guessing
from loyalty_service.use_cases.guessing import GuessBudget, Guesser, GuessThrottle
from loyalty_service.use_cases.ports import Repositories, UnitOfWork
from loyalty_service.use_cases.referrals import Referrals

log = get_logger(__name__)


@dataclass(frozen=True)
class Quote:
    code: str
    tariff: Tariff
    price: Price
    schedule: tuple[PricePeriod, ...] = ()


_EXPIRY = (PurchaseStatus.PENDING, PurchaseStatus.EXPIRED)


def _quote_of(decision: Decision) -> Quote:
    assert decision.tariff is not None and decision.price is not None
    price = decision.price
    periods = schedule(decision.duration, decision.duration_periods, price.base, price.final)
    return Quote(decision.code, decision.tariff, price, periods)


class Promotions:
    """ApplyPromoCode and UsePromoCode are one store call each (RedemptionRepository: the
    decision, the counters, the purchase and the rejection record in one round trip), the
    guessing throttle's buckets checked and spent in that same call."""

    def __init__(
        self, store: UnitOfWork, referrals: Referrals, guesses: GuessThrottle | None = None
    ) -> None:
        self._store = store
        self._referrals = referrals
        # None: nobody is throttled (an admin applying codes on users' behalf).
        self._guesses = guesses

    def _budget(self, guesser: Guesser | None, hashed: bytes | None = None) -> GuessBudget | None:
        """The caller's guessing buckets; `hashed`: its address's keyed hash, when the caller
        has it already (the same hash a referral keeps)."""
        if guesser is None or self._guesses is None:
            return None
        if hashed is None:
            hashed = self._referrals.address_hash(guesser.address)
        return self._guesses.budget(guesser.user_id, hashed)

    async def _throttled(self, budget: GuessBudget | None) -> ServiceError:
        """The refusal of a caller short of guesses, with the real time to wait (a second
        round trip, on the guesser's path only)."""
        assert budget is not None, "only a throttled call is refused for guessing"
        return guessing.refusal(await self._store.single.redemption.guess_wait(budget))

    @staticmethod
    def _refused(reason: Reason) -> Rejection:
        metrics.PROMO_REJECTIONS.labels(reason.value).inc()
        return Rejection(reason)

    @domain_step("promo.eligibility")
    async def _decide(
        self, code: str, tariff_id: str, user_id: str, budget: GuessBudget | None
    ) -> Decision:
        return await self._store.single.redemption.apply(
            code, tariff_id, user_id, datetime.now(UTC), budget
        )

    @domain_step("promo.take_use")
    async def _take(
        self,
        code: str,
        tariff_id: str,
        user_id: str,
        request_id: str | None,
        referee_address: bytes | None,
        budget: GuessBudget | None,
    ) -> UseOutcome:
        """The decision, the uses taken and the purchase, or the recorded refusal: one
        statement (loyalty_use), so this step's span holds exactly that SQL. A referral it
        makes keeps where the referee used the code, for the same-address signal."""
        return await self._store.single.redemption.use(
            code,
            tariff_id,
            user_id,
            request_id,
            str(uuid.uuid4()),
            datetime.now(UTC),
            referee_address,
            budget,
        )

    async def quote(
        self, user_id: str, code: str, tariff_id: str, guesser: Guesser | None = None
    ) -> Quote:
        budget = self._budget(guesser)
        decision = await self._decide(code, tariff_id, user_id, budget)
        if decision.reason is Reason.TOO_MANY_PROMO_ATTEMPTS:
            raise await self._throttled(budget)
        if decision.reason is not None:
            raise self._refused(decision.reason)
        return _quote_of(decision)

    async def redeem(
        self,
        user_id: str,
        code: str,
        tariff_id: str,
        request_id: str | None,
        guesser: Guesser | None = None,
    ) -> Purchase:
        """Takes one use and creates a PENDING purchase, in one statement; or answers with
        the purchase made earlier with this request id (a throttled caller too)."""
        address = guesser.address if guesser is not None else ""
        # One keyed hash of the address, for the guessing bucket and the referral alike.
        hashed = self._referrals.address_hash(address) if address else None
        budget = self._budget(guesser, hashed)
        outcome = await self._take(code, tariff_id, user_id, request_id or None, hashed, budget)
        if outcome.reason is Reason.TOO_MANY_PROMO_ATTEMPTS:
            raise await self._throttled(budget)
        if outcome.reason is not None:
            raise self._refused(outcome.reason)
        assert outcome.purchase is not None
        if outcome.is_new:
            metrics.PROMO_USES.inc()
        return outcome.purchase

    @staticmethod
    def _is_settler(principal: Identity) -> bool:
        return principal.is_admin or principal.has_scope(PURCHASES_SETTLE)

    async def _owned(self, tx: Repositories, principal: Identity, purchase_id: str) -> Purchase:
        """The purchase, locked; someone else's is answered as missing unless the caller
        settles purchases. A service account owns none (its id is no user's)."""
        found = await tx.purchases.get(purchase_id, lock=True)
        owner = found is not None and found.user_id == principal.subject
        if found is None or not lifecycle.may_see(owner, self._is_settler(principal)):
            raise Rejection(Reason.PURCHASE_NOT_FOUND)
        return found

    async def _settled(self, tx: Repositories, principal: Identity, purchase_id: str) -> Purchase:
        """The purchase, locked, for a confirm or refund: the permission first, so a caller
        who may not settle learns nothing about the purchase."""
        lifecycle.check_settler(principal.is_admin, principal.has_scope(PURCHASES_SETTLE))
        found = await tx.purchases.get(purchase_id, lock=True)
        if found is None:
            raise Rejection(Reason.PURCHASE_NOT_FOUND)
        return found

    async def confirm(self, principal: Identity, purchase_id: str) -> Purchase:
        async with self._store.transaction() as tx:
            found = await self._settled(tx, principal, purchase_id)
            if not lifecycle.check_confirm(found.status):
                return found
            done = await tx.purchases.set_status(purchase_id, PurchaseStatus.COMPLETED)
            # The reward, if any, commits with the confirm or not at all.
            referrer = await self._referrals.settle(tx, purchase_id)
            await events.purchase_changed(tx.outbox, done, referrer)
        metrics.PROMO_CONFIRMS.inc()
        return done

    async def refund(self, principal: Identity, purchase_id: str, reason: str) -> Purchase:
        """COMPLETED → REFUNDED, once: the row lock orders racing refunds, and the ones after
        the first find it refunded and change nothing (no second give-back)."""
        async with self._store.transaction() as tx:
            found = await self._settled(tx, principal, purchase_id)
            if not lifecycle.check_refund(found.status):
                return found
            done = await tx.settlement.refund(purchase_id, reason)
            returns_use = await tx.settlement.refund_returns_use(found.code)
            if lifecycle.gives_use_back(found.status, done.status, returns_use):
                await tx.codes.give_back(done)
            # The referral's reward is reversed or clawed back in the same transaction.
            referrer = await self._referrals.on_refund(tx, purchase_id)
            await events.purchase_changed(tx.outbox, done, referrer, reason)
        metrics.PROMO_REFUNDS.inc()
        return done

    async def cancel(self, principal: Identity, purchase_id: str) -> Purchase:
        target = PurchaseStatus.CANCELLED
        async with self._store.transaction() as tx:
            found = await self._owned(tx, principal, purchase_id)
            if not lifecycle.check_cancel(found.status):
                return found
            done = await tx.purchases.set_status(purchase_id, target)
            if lifecycle.gives_use_back(found.status, target):
                await tx.codes.give_back(done)
            referrer = await self._referrals.give_back(tx, purchase_id, target.value)
            await events.purchase_changed(tx.outbox, done, referrer)
        metrics.PROMO_CANCELS.inc()
        return done

    async def active_codes(
        self, user_id: str, after: tuple[str, str] | None, limit: int
    ) -> list[ActiveCode]:
        if await self._store.single.users.status_of(user_id) is not UserStatus.ACTIVE:
            return []
        return await self._store.single.codes.active_for_user(
            user_id, datetime.now(UTC), after, limit
        )

    async def tariffs(self) -> list[Tariff]:
        return await self._store.single.tariffs.all_tariffs()

    async def purchases_of(
        self, user_id: str, after: tuple[datetime, str] | None, limit: int
    ) -> list[Purchase]:
        return await self._store.single.purchases.page_for_user(user_id, after, limit)

    async def expire_stale(self, older_than: datetime, batch: int = 500) -> int:
        """One batch of stale PENDING purchases expired, each with its purchase.expired event
        in the same transaction."""
        async with self._store.transaction() as tx:
            expired = await tx.purchases.expire_stale(
                older_than, batch, give_back=lifecycle.gives_use_back(*_EXPIRY)
            )
            for ended in expired:
                await events.purchase_changed(tx.outbox, ended.purchase, ended.referrer_id)
        metrics.PROMO_EXPIRIES.inc(len(expired))
        return len(expired)

    async def forget_rejections(self, older_than: datetime, batch: int = 5000) -> int:
        return await self._store.single.rejections.forget_before(older_than, batch)

    async def drop_rejection_months(self, older_than: datetime) -> int:
        return await self._store.single.rejections.drop_months_before(older_than)

    async def make_partitions(self) -> int:
        return await self._store.single.partitions.ensure(datetime.now(UTC))
