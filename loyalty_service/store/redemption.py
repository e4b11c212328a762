"""ApplyPromoCode and UsePromoCode as one round trip each: the server-side functions in
loyalty_service/store/sql/ (loyalty_apply.sql, loyalty_use.sql: the decision, the counters, the
purchase and the rejection record, in one statement), with the guessing throttle's buckets in
that same statement (loyalty_guess_*.sql)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from loyalty_service.domain.eligibility import Tariff
from loyalty_service.domain.pricing import Price
from loyalty_service.domain.reasons import Reason
from loyalty_service.domain.redemption import Decision, UseOutcome
from loyalty_service.domain.schedule import Duration
from loyalty_service.store.purchases import to_purchase
from loyalty_service.use_cases.guessing import GuessBudget

_APPLY = "SELECT * FROM loyalty_apply($1, $2, $3, $4, $5, $6, $7, $8)"
_USE = "SELECT * FROM loyalty_use($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
_WAIT = "SELECT loyalty_guess_wait($1, $2, $3)"
_FORGET = "DELETE FROM guess_buckets WHERE at < $1"


def _budget_args(budget: GuessBudget | None) -> tuple[Any, Any, Any, Any]:
    if budget is None:
        return None, None, None, None
    return budget.buckets, budget.capacities, budget.per_millisecond, budget.misses


class PgRedemption:
    """Apply and Use, one round trip each (RedemptionRepository)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def apply(
        self,
        code: str,
        tariff_id: str,
        user_id: str,
        now: datetime,
        budget: GuessBudget | None = None,
    ) -> Decision:
        """The decision at `now`; a refusal is recorded in the same statement."""
        row = await self._conn.fetchrow(
            _APPLY, code, tariff_id, user_id, now, *_budget_args(budget)
        )
        if row["reason"] is not None:
            return Decision(Reason(row["reason"]))
        tariff = Tariff(
            row["tariff_id"],
            row["tariff_name"],
            row["tariff_price"],
            row["tariff_currency"],
            row["tariff_period"],
        )
        price = Price(row["base_minor"], row["discount_minor"], row["final_minor"])
        return Decision(
            None, row["code"], tariff, price, Duration(row["duration"]), row["duration_periods"]
        )

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
        """The purchase (made now, or earlier with this request id), or the recorded refusal.
        `referee_address`: the caller's address hash, kept on the referral the use makes."""
        row = await self._conn.fetchrow(
            _USE,
            code,
            tariff_id,
            user_id,
            request_id,
            purchase_id,
            now,
            referee_address,
            *_budget_args(budget),
        )
        if row["reason"] is not None:
            return UseOutcome(Reason(row["reason"]))
        return UseOutcome(None, to_purchase(row), bool(row["is_new"]))

    async def guess_wait(self, budget: GuessBudget) -> float:
        """Seconds until the buckets allow a look-up again (0: now)."""
        waited: int = await self._conn.fetchval(
            _WAIT, budget.buckets, budget.capacities, budget.per_millisecond
        )
        return waited / 1000


class PgGuessBuckets:
    """The guessing throttle's buckets, for the retention worker (loyalty_use and loyalty_apply
    spend and read them in their own statements)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def forget_full(self, before: datetime) -> int:
        """Deletes the buckets untouched since `before` (full again by then, so the same as
        absent); how many."""
        done: str = await self._conn.execute(_FORGET, before)
        return int(done.split()[-1])
