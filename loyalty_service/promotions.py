"""The user-facing use cases: quote a tariff with a code, redeem it, confirm or cancel."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

import asyncpg

from common import metrics
from common.logs import get_logger
from common.tokens import Principal
from common.trace_context import domain_step
from loyalty_service import events
from loyalty_service.domain import purchases as lifecycle
from loyalty_service.domain.codes import PromoCode
from loyalty_service.domain.eligibility import Attempt, Tariff, rejection_reason
from loyalty_service.domain.pricing import Discount, Price, quote
from loyalty_service.domain.reasons import Reason, Rejection
from loyalty_service.domain.referrals import is_referral
from loyalty_service.domain.schedule import PricePeriod, schedule
from loyalty_service.guessing import Guesser, GuessThrottle
from loyalty_service.referrals import Referrals
from loyalty_service.store import codes, purchases, rejections, tariffs, users

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


class _AlreadyRedeemed(Exception):
    """This user already made a purchase with this request id."""


def to_attempt(row: asyncpg.Record, now: datetime) -> Attempt:
    code = codes.to_code(row) if row["code"] is not None else None
    tariff = (
        Tariff(row["t_id"], row["t_name"], row["t_price"], row["t_currency"], row["t_period"])
        if row["t_id"] is not None
        else None
    )
    return Attempt(
        code,
        tariff,
        row["user_status"],
        bool(row["in_audience"]),
        row["user_uses"],
        now,
        bool(row["has_purchase"]),
    )


class Promotions:
    def __init__(
        self, pool: asyncpg.Pool, referrals: Referrals, guesses: GuessThrottle | None = None
    ) -> None:
        self._pool = pool
        self._referrals = referrals
        # None: nobody is throttled (an admin applying codes on users' behalf).
        self._guesses = guesses

    async def refuse(
        self, user_id: str | None, code: str, tariff_id: str, reason: Reason
    ) -> NoReturn:
        """Records the rejection, then raises it; a failed write never hides the reason."""
        metrics.PROMO_REJECTIONS.labels(reason.value).inc()
        try:
            await rejections.record(self._pool, user_id, code, tariff_id, reason.value)
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
        attempt = to_attempt(
            await codes.attempt(self._pool, code, tariff_id, user_id), datetime.now(UTC)
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
    ) -> asyncpg.Record:
        """Takes one use and creates a PENDING purchase, in one transaction."""
        if request_id:
            earlier = await purchases.by_request(self._pool, user_id, request_id)
            if earlier is not None:
                return earlier
        promo, tariff, discount = await self._checked(user_id, code, tariff_id, guesser)
        price = price_of(promo, tariff, discount)
        try:
            return await self._take(user_id, promo, tariff, price, request_id)
        except _AlreadyRedeemed:
            assert request_id is not None
            return await purchases.by_request(self._pool, user_id, request_id)
        except Rejection as rejection:
            await self.refuse(user_id, code, tariff_id, rejection.reason_code)

    @domain_step("promo.take_use")
    async def _take(
        self, user_id: str, promo: PromoCode, tariff: Tariff, price: Price, request_id: str | None
    ) -> asyncpg.Record:
        # The purchase row goes first: a duplicate request id stops here, before any use
        # is taken. Code counter before user counter, the same lock order as cancel/expiry.
        duration = (promo.duration.value, promo.duration_periods)
        async with self._pool.acquire() as conn, conn.transaction():
            row = await purchases.insert(
                conn, str(uuid.uuid4()), user_id, promo.code, tariff, price, request_id, duration
            )
            if row is None:
                raise _AlreadyRedeemed
            await self._check_first(conn, promo, user_id, str(row["purchase_id"]))
            if not await codes.take_use(conn, promo.code, price.discount):
                raise Rejection(await self._why_not_taken(conn, promo.code))
            if not await codes.take_user_use(conn, promo.code, user_id, promo.per_user_limit):
                raise Rejection(Reason.PROMO_CODE_USER_LIMIT_REACHED)
            if is_referral(promo):
                await self._referrals.start(conn, str(row["purchase_id"]), user_id, promo)
        metrics.PROMO_USES.inc()
        return row

    @staticmethod
    async def _check_first(conn: Any, promo: PromoCode, user_id: str, purchase_id: str) -> None:
        if promo.first_purchase_only and not await codes.lock_first_purchase(
            conn, user_id, purchase_id
        ):
            raise Rejection(Reason.PROMO_CODE_FIRST_PURCHASE_ONLY)

    @staticmethod
    async def _why_not_taken(conn: Any, code: str) -> Reason:
        if await codes.out_of_uses(conn, code):
            return Reason.PROMO_CODE_EXHAUSTED
        return Reason.PROMO_CODE_BUDGET_SPENT

    async def _owned(self, conn: Any, principal: Principal, purchase_id: str) -> asyncpg.Record:
        row = await purchases.get(conn, purchase_id, lock=True)
        # Someone else's purchase is answered as missing, so ids cannot be probed.
        if row is None or not (principal.is_admin or str(row["user_id"]) == principal.user_id):
            raise Rejection(Reason.PURCHASE_NOT_FOUND)
        return row

    async def confirm(self, principal: Principal, purchase_id: str) -> asyncpg.Record:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await self._owned(conn, principal, purchase_id)
            if not lifecycle.check_confirm(lifecycle.PurchaseStatus(row["status"])):
                return row
            row = await purchases.set_status(conn, purchase_id, "COMPLETED")
            # The reward, if any, commits with the confirm or not at all.
            referrer = await self._referrals.settle(conn, purchase_id)
            await events.purchase_changed(conn, row, referrer)
        metrics.PROMO_CONFIRMS.inc()
        return row

    async def cancel(self, principal: Principal, purchase_id: str) -> asyncpg.Record:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await self._owned(conn, principal, purchase_id)
            if not lifecycle.check_cancel(lifecycle.PurchaseStatus(row["status"])):
                return row
            row = await purchases.set_status(conn, purchase_id, "CANCELLED")
            await codes.give_back(conn, row["code"], str(row["user_id"]), row["discount_minor"])
            referrer = await self._referrals.give_back(conn, purchase_id, "CANCELLED")
            await events.purchase_changed(conn, row, referrer)
        metrics.PROMO_CANCELS.inc()
        return row

    async def active_codes(
        self, user_id: str, after: tuple[str, str] | None, limit: int
    ) -> list[asyncpg.Record]:
        if await users.status_of(self._pool, user_id) != "ACTIVE":
            return []
        return await codes.active_for_user(self._pool, user_id, datetime.now(UTC), after, limit)

    async def tariffs(self) -> list[Tariff]:
        return await tariffs.all_tariffs(self._pool)

    async def purchases_of(
        self, user_id: str, after: tuple[datetime, str] | None, limit: int
    ) -> list[asyncpg.Record]:
        return await purchases.page_for_user(self._pool, user_id, after, limit)

    async def expire_stale(self, older_than: datetime, batch: int = 500) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            expired = await purchases.expire_stale(conn, older_than, batch)
        metrics.PROMO_EXPIRIES.inc(expired)
        return expired

    async def forget_rejections(self, older_than: datetime, batch: int = 5000) -> int:
        return await rejections.forget_before(self._pool, older_than, batch)
