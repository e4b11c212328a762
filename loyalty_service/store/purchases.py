"""Purchases made with a code, and their status changes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from loyalty_service.domain.purchases import LIVE, Ended, Purchase, PurchaseStatus
from loyalty_service.domain.schedule import Duration

# domain.purchases.LIVE as an SQL list, for `status IN {LIVE_SQL}` (the PL/pgSQL functions of
# the migrations spell it themselves).
LIVE_SQL = "(" + ", ".join(f"'{status.value}'" for status in sorted(LIVE)) + ")"


def to_purchase(row: asyncpg.Record) -> Purchase:
    return Purchase(
        purchase_id=str(row["purchase_id"]),
        user_id=str(row["user_id"]),
        code=row["code"],
        tariff_id=row["tariff_id"],
        base=row["base_minor"],
        discount=row["discount_minor"],
        final=row["final_minor"],
        currency=row["currency"],
        status=PurchaseStatus(row["status"]),
        request_id=row["request_id"],
        duration=Duration(row["duration"]),
        duration_periods=row["duration_periods"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        slot=row.get("slot"),
    )


def _maybe(row: asyncpg.Record | None) -> Purchase | None:
    return None if row is None else to_purchase(row)


_EXPIRE = (
    "WITH stale AS ("
    "  SELECT purchase_id, created_at FROM purchases"
    "  WHERE status = 'PENDING' AND created_at < $1"
    "  ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED"
    "), expired AS ("
    "  UPDATE purchases p SET status = 'EXPIRED', updated_at = now() FROM stale s"
    "  WHERE p.purchase_id = s.purchase_id AND p.created_at = s.created_at"
    "  RETURNING p.*"
    "), referrals_back AS ("
    "  UPDATE referrals r SET status = 'EXPIRED' FROM expired e"
    "  WHERE r.purchase_id = e.purchase_id AND r.status = 'PENDING'"
    "  RETURNING r.purchase_id, r.referrer_id"
    "{give_back}"
)
# The expired rows, each with its referrer; a data-modifying CTE runs whether read or not.
_EXPIRED_ROWS = (
    " SELECT e.*, b.referrer_id FROM expired e"
    " LEFT JOIN referrals_back b ON b.purchase_id = e.purchase_id"
)
_ROWS = ")" + _EXPIRED_ROWS
# Uses and discounts back into the slots they came from; the user's uses back.
_GIVE_BACK = (
    "), slots AS ("
    "  SELECT loyalty_give_back(code, slot, count(*)::int, sum(discount_minor)::bigint)"
    "  FROM expired GROUP BY code, slot"
    "), holders AS ("
    "  UPDATE user_code_uses x SET uses = x.uses - e.n"
    "  FROM (SELECT code, user_id, count(*) AS n FROM expired GROUP BY code, user_id) e"
    "  WHERE x.code = e.code AND x.user_id = e.user_id"
    # A plain SELECT in WITH runs only when read: the join to `given` makes it run, once.
    ")" + _EXPIRED_ROWS + " CROSS JOIN (SELECT count(*) FROM slots) given"
)


class PgPurchases:
    """Purchases over a connection or the pool (PurchasesRepository)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def by_request(self, user_id: str, request_id: str) -> Purchase | None:
        row = await self._conn.fetchrow(
            "SELECT p.* FROM purchase_requests r JOIN purchases p"
            " ON p.purchase_id = r.purchase_id AND p.created_at = r.created_at"
            " WHERE r.user_id = $1 AND r.request_id = $2",
            user_id,
            request_id,
        )
        return _maybe(row)

    async def get(self, purchase_id: str, *, lock: bool = False) -> Purchase | None:
        suffix = " FOR UPDATE" if lock else ""
        row = await self._conn.fetchrow(
            f"SELECT * FROM purchases WHERE purchase_id = $1{suffix}", purchase_id
        )
        return _maybe(row)

    async def set_status(self, purchase_id: str, status: PurchaseStatus) -> Purchase:
        row = await self._conn.fetchrow(
            "UPDATE purchases SET status = $2, updated_at = now() WHERE purchase_id = $1"
            " RETURNING *",
            purchase_id,
            status.value,
        )
        return to_purchase(row)

    async def expire_stale(
        self, older_than: datetime, limit: int, *, give_back: bool
    ) -> list[Ended]:
        """Expires PENDING purchases created before `older_than` and, when `give_back` (the
        domain's rule for this transition), gives their uses and discounts back; returns the
        expired purchases with their referrers (for one event each, in the same transaction).

        SKIP LOCKED lets several replicas sweep at once, and skips purchases that a confirm or
        cancel holds right now; the status change and the give-back (of the code's use and of a
        referral) commit together."""
        rows = await self._conn.fetch(
            _EXPIRE.format(give_back=_GIVE_BACK if give_back else _ROWS), older_than, limit
        )
        return [Ended(to_purchase(r), _text(r["referrer_id"])) for r in rows]

    async def page_for_user(
        self, user_id: str, after: tuple[datetime, str] | None, limit: int
    ) -> list[Purchase]:
        rows = await self._conn.fetch(
            "SELECT * FROM purchases WHERE user_id = $1"
            " AND ($2::timestamptz IS NULL OR (created_at, purchase_id) < ($2, $3::uuid))"
            " ORDER BY created_at DESC, purchase_id DESC LIMIT $4",
            user_id,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
        return [to_purchase(r) for r in rows]

    async def counts_by_status(self, code: str) -> dict[str, int]:
        rows = await self._conn.fetch(
            "SELECT status, count(*) AS n FROM purchases WHERE code = $1 GROUP BY status", code
        )
        return {r["status"]: r["n"] for r in rows}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
