"""The user-facing use cases: quote a tariff with a code, redeem it, confirm or cancel."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NoReturn

from common import metrics
from common.logs import get_logger
from common.tokens import Principal
from common.trace_context import domain_step
from common.user_status import UserStatus
from loyalty_service.domain import purchases as lifecycle
from loyalty_service.domain.codes import ActiveCode, PromoCode
from loyalty_service.domain.eligibility import Attempt, Tariff, rejection_reason
from loyalty_service.domain.pricing import Discount, Price, quote
from loyalty_service.domain.purchases import Purchase, PurchaseStatus
from loyalty_service.domain.reasons import Reason, Rejection
from loyalty_service.domain.referrals import is_referral
from loyalty_service.domain.schedule import PricePeriod, schedule
from loyalty_service.use_cases import events
from loyalty_service.use_cases.guessing import Guesser, GuessThrottle
from loyalty_service.use_cases.ports import Repositories, UnitOfWork
from loyalty_service.use_cases.referrals import Referrals

log = get_logger(__name__)


@dataclass(frozen=True)
class Quote:
    code: str
    tariff: Tariff
    price: Price
    schedule: tuple[PricePeriod, ...] = ()


def price_of(promo: PromoCode, tariff: Tariff, discount: Discount | None = None) -> Price:
    """The price with the code's cap; `discount` replaces the code's own (a referral code's
    discount is the program's)."""
    return quote(tariff.price, promo.discount if discount is None else discount, promo.max_discount)


_EXPIRY = (PurchaseStatus.PENDING, PurchaseStatus.EXPIRED)


class _AlreadyRedeemed(Exception):
    """This user already made a purchase with this request id."""


class Promotions:
    def __init__(
        self, store: UnitOfWork, referrals: Referrals, guesses: GuessThrottle | None = None
    ) -> None:
        self._store = store
        self._referrals = referrals
        # None: nobody is throttled (an admin applying codes on users' behalf).
        self._guesses = guesses

    async def refuse(
        self, user_id: str | None, code: str, tariff_id: str, reason: Reason
    ) -> NoReturn:
        """Records the rejection, then raises it; a failed write never hides the reason."""
        metrics.PROMO_REJECTIONS.labels(reason.value).inc()
        try:
            await self._store.single.rejections.record(user_id, code, tariff_id, reason.value)
        except Exception as error:  # the answer matters more than the record
            log.warning("rejection_not_recorded", reason=reason.value, error=repr(error))
        raise Rejection(reason)

    @domain_step("promo.eligibility")
    async def _checked(
        self, user_id: str, code: str, tariff_id: str, guesser: Guesser | None
    ) -> tuple[PromoCode, Tariff, Discount]:
        """The code, the tariff and the discount this user gets; or the recorded rejection."""
        if guesser is not None and self._guesses is not None:
            await self._guesses.check(guesser)
        attempt = await self._store.single.codes.attempt(
            code, tariff_id, user_id, datetime.now(UTC)
        )
        reason, discount = await self._decision(attempt, user_id)
        if guesser is not None and self._guesses is not None:
            await self._guesses.answered(guesser, reason)
        if reason is not None:
            await self.refuse(user_id, code, tariff_id, reason)
        assert attempt.code is not None and attempt.tariff is not None and discount is not None
        return attempt.code, attempt.tariff, discount

    async def _decision(
        self, attempt: Attempt, user_id: str
    ) -> tuple[Reason | None, Discount | None]:
        """Why the attempt fails (None: it does not), and the discount it would get."""
        if is_referral(attempt.code):
            return await self._referrals.check(attempt, user_id)
        return rejection_reason(attempt), attempt.code.discount if attempt.code else None

    async def quote(
        self, user_id: str, code: str, tariff_id: str, guesser: Guesser | None = None
    ) -> Quote:
        promo, tariff, discount = await self._checked(user_id, code, tariff_id, guesser)
        price = price_of(promo, tariff, discount)
        periods = schedule(promo.duration, promo.duration_periods, price.base, price.final)
        return Quote(promo.code, tariff, price, periods)

    async def redeem(
        self,
        user_id: str,
        code: str,
        tariff_id: str,
        request_id: str | None,
        guesser: Guesser | None = None,
    ) -> Purchase:
        """Takes one use and creates a PENDING purchase, in one transaction."""
        if request_id:
            earlier = await self._store.single.purchases.by_request(user_id, request_id)
            if earlier is not None:
                return earlier
        promo, tariff, discount = await self._checked(user_id, code, tariff_id, guesser)
        price = price_of(promo, tariff, discount)
        try:
            return await self._take(user_id, promo, tariff, price, request_id)
        except _AlreadyRedeemed:
            assert request_id is not None
            earlier = await self._store.single.purchases.by_request(user_id, request_id)
            assert earlier is not None  # the purchase that made the insert conflict
            return earlier
        except Rejection as rejection:
            await self.refuse(user_id, code, tariff_id, rejection.reason_code)

    @domain_step("promo.take_use")
    async def _take(
        self, user_id: str, promo: PromoCode, tariff: Tariff, price: Price, request_id: str | None
    ) -> Purchase:
        # The purchase row goes first: a duplicate request id stops here, before any use
        # is taken. Code counter before user counter, the same lock order as cancel/expiry.
        duration = (promo.duration.value, promo.duration_periods)
        async with self._store.transaction() as tx:
            made = await tx.purchases.insert(
                str(uuid.uuid4()), user_id, promo.code, tariff, price, request_id, duration
            )
            if made is None:
                raise _AlreadyRedeemed
            await self._check_first(tx, promo, user_id, made.purchase_id)
            if not await tx.codes.take_use(promo.code, price.discount):
                raise Rejection(await self._why_not_taken(tx, promo.code))
            if not await tx.codes.take_user_use(promo.code, user_id, promo.per_user_limit):
                raise Rejection(Reason.PROMO_CODE_USER_LIMIT_REACHED)
            if is_referral(promo):
                await self._referrals.start(tx, made.purchase_id, user_id, promo)
        metrics.PROMO_USES.inc()
        return made

    @staticmethod
    async def _check_first(
        tx: Repositories, promo: PromoCode, user_id: str, purchase_id: str
    ) -> None:
        if promo.first_purchase_only and not await tx.codes.lock_first_purchase(
            user_id, purchase_id
        ):
            raise Rejection(Reason.PROMO_CODE_FIRST_PURCHASE_ONLY)

    @staticmethod
    async def _why_not_taken(tx: Repositories, code: str) -> Reason:
        if await tx.codes.out_of_uses(code):
            return Reason.PROMO_CODE_EXHAUSTED
        return Reason.PROMO_CODE_BUDGET_SPENT

    async def _owned(self, tx: Repositories, principal: Principal, purchase_id: str) -> Purchase:
        found = await tx.purchases.get(purchase_id, lock=True)
        # Someone else's purchase is answered as missing, so ids cannot be probed.
        if found is None or not (principal.is_admin or found.user_id == principal.user_id):
            raise Rejection(Reason.PURCHASE_NOT_FOUND)
        return found

    async def confirm(self, principal: Principal, purchase_id: str) -> Purchase:
        async with self._store.transaction() as tx:
            found = await self._owned(tx, principal, purchase_id)
            if not lifecycle.check_confirm(found.status):
                return found
            done = await tx.purchases.set_status(purchase_id, PurchaseStatus.COMPLETED)
            # The reward, if any, commits with the confirm or not at all.
            referrer = await self._referrals.settle(tx, purchase_id)
            await events.purchase_changed(tx.outbox, done, referrer)
        metrics.PROMO_CONFIRMS.inc()
        return done

    async def cancel(self, principal: Principal, purchase_id: str) -> Purchase:
        target = PurchaseStatus.CANCELLED
        async with self._store.transaction() as tx:
            found = await self._owned(tx, principal, purchase_id)
            if not lifecycle.check_cancel(found.status):
                return found
            done = await tx.purchases.set_status(purchase_id, target)
            if lifecycle.gives_use_back(found.status, target):
                await tx.codes.give_back(done.code, done.user_id, done.discount)
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
        async with self._store.transaction() as tx:
            expired = await tx.purchases.expire_stale(
                older_than, batch, give_back=lifecycle.gives_use_back(*_EXPIRY)
            )
        metrics.PROMO_EXPIRIES.inc(expired)
        return expired

    async def forget_rejections(self, older_than: datetime, batch: int = 5000) -> int:
        return await self._store.single.rejections.forget_before(older_than, batch)
