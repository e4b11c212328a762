"""The user-facing use cases: quote a tariff with a code, redeem it, confirm or cancel."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from common import metrics
from common.errors import ServiceError
from common.tokens import Principal
from loyalty_service import events
from loyalty_service.domain import purchases as lifecycle
from loyalty_service.domain.eligibility import Tariff
from loyalty_service.domain.pricing import Price
from loyalty_service.domain.reasons import Reason, Rejection
from loyalty_service.domain.schedule import Duration, PricePeriod, schedule
from loyalty_service.guessing import Guesser, GuessThrottle
from loyalty_service.referrals import Referrals
from loyalty_service.store import (
    codes,
    partitions,
    purchases,
    redemption,
    rejections,
    tariffs,
    users,
)


@dataclass(frozen=True)
class Quote:
    code: str
    tariff: Tariff
    price: Price
    schedule: tuple[PricePeriod, ...] = ()


def _quote_of(row: asyncpg.Record) -> Quote:
    tariff = Tariff(
        row["tariff_id"],
        row["tariff_name"],
        row["tariff_price"],
        row["tariff_currency"],
        row["tariff_period"],
    )
    price = Price(row["base_minor"], row["discount_minor"], row["final_minor"])
    periods = schedule(Duration(row["duration"]), row["duration_periods"], price.base, price.final)
    return Quote(row["code"], tariff, price, periods)


def _reason(row: asyncpg.Record) -> Reason | None:
    return Reason(row["reason"]) if row["reason"] else None


class Promotions:
    """ApplyPromoCode and UsePromoCode are one call each to PostgreSQL (store/redemption.py:
    the decision, the counters, the purchase and the rejection record); the guessing
    throttle around that call is Redis's."""

    def __init__(
        self, pool: asyncpg.Pool, referrals: Referrals, guesses: GuessThrottle | None = None
    ) -> None:
        self._pool = pool
        self._referrals = referrals
        # None: nobody is throttled (an admin applying codes on users' behalf).
        self._guesses = guesses

    async def _may_guess(self, guesser: Guesser | None) -> None:
        if guesser is not None and self._guesses is not None:
            await self._guesses.check(guesser)

    async def _answered(self, guesser: Guesser | None, reason: Reason | None) -> None:
        if guesser is not None and self._guesses is not None:
            await self._guesses.answered(guesser, reason)

    @staticmethod
    def _refused(reason: Reason) -> Rejection:
        metrics.PROMO_REJECTIONS.labels(reason.value).inc()
        return Rejection(reason)

    async def quote(
        self, user_id: str, code: str, tariff_id: str, guesser: Guesser | None = None
    ) -> Quote:
        await self._may_guess(guesser)
        row = await redemption.apply(self._pool, code, tariff_id, user_id, datetime.now(UTC))
        reason = _reason(row)
        await self._answered(guesser, reason)
        if reason is not None:
            raise self._refused(reason)
        return _quote_of(row)

    async def redeem(
        self,
        user_id: str,
        code: str,
        tariff_id: str,
        request_id: str | None,
        guesser: Guesser | None = None,
    ) -> asyncpg.Record:
        """Takes one use and creates a PENDING purchase, in one statement; or answers with
        the purchase made earlier with this request id."""
        try:
            await self._may_guess(guesser)
        except ServiceError:
            # A throttled caller still gets the purchase it already made.
            earlier = (
                await purchases.by_request(self._pool, user_id, request_id) if request_id else None
            )
            if earlier is None:
                raise
            return earlier
        row = await redemption.use(
            self._pool,
            code,
            tariff_id,
            user_id,
            request_id or None,
            str(uuid.uuid4()),
            datetime.now(UTC),
        )
        reason = _reason(row)
        await self._answered(guesser, reason)
        if reason is not None:
            raise self._refused(reason)
        if row["is_new"]:
            metrics.PROMO_USES.inc()
        return row

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
            await codes.give_back(conn, row)
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

    async def drop_rejection_months(self, older_than: datetime) -> int:
        return await rejections.drop_months_before(self._pool, older_than)

    async def make_partitions(self) -> int:
        return await partitions.ensure(self._pool, datetime.now(UTC))
