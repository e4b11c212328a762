"""Purchases made with a code, and their status changes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from loyalty_service.domain.eligibility import Tariff
from loyalty_service.domain.pricing import Price
from loyalty_service.domain.purchases import Purchase, PurchaseStatus
from loyalty_service.domain.schedule import Duration


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
    )


def _maybe(row: asyncpg.Record | None) -> Purchase | None:
    return None if row is None else to_purchase(row)


async def insert(
    conn: Any,
    purchase_id: str,
    user_id: str,
    code: str,
    tariff: Tariff,
    price: Price,
    request_id: str | None,
    duration: tuple[str, int] = ("ONCE", 0),
) -> Purchase | None:
    """The new PENDING purchase, or None when this user already used this request id."""
    row = await conn.fetchrow(
        "INSERT INTO purchases (purchase_id, user_id, code, tariff_id, base_minor,"
        " discount_minor, final_minor, currency, status, request_id, duration, duration_periods)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'PENDING', $9, $10, $11)"
        " ON CONFLICT (user_id, request_id) DO NOTHING RETURNING *",
        purchase_id,
        user_id,
        code,
        tariff.tariff_id,
        price.base,
        price.discount,
        price.final,
        tariff.currency,
        request_id,
        *duration,
    )
    return _maybe(row)


async def by_request(conn: Any, user_id: str, request_id: str) -> Purchase | None:
    row = await conn.fetchrow(
        "SELECT * FROM purchases WHERE user_id = $1 AND request_id = $2", user_id, request_id
    )
    return _maybe(row)


async def get(conn: Any, purchase_id: str, *, lock: bool = False) -> Purchase | None:
    suffix = " FOR UPDATE" if lock else ""
    row = await conn.fetchrow(
        f"SELECT * FROM purchases WHERE purchase_id = $1{suffix}", purchase_id
    )
    return _maybe(row)


async def set_status(conn: Any, purchase_id: str, status: PurchaseStatus) -> Purchase:
    row = await conn.fetchrow(
        "UPDATE purchases SET status = $2, updated_at = now() WHERE purchase_id = $1 RETURNING *",
        purchase_id,
        status.value,
    )
    return to_purchase(row)


async def expire_stale(conn: Any, older_than: datetime, limit: int, *, give_back: bool) -> int:
    """Expires PENDING purchases created before `older_than` and, when `give_back` (the
    domain's rule for this transition), gives their uses and discounts back.

    SKIP LOCKED lets several replicas sweep at once, and skips purchases that a confirm or
    cancel holds right now; the status change and the give-back (of the code's use and of a
    referral) commit together."""
    count: int = await conn.fetchval(
        _EXPIRE.format(give_back=_GIVE_BACK if give_back else ""), older_than, limit
    )
    return count


_EXPIRE = (
    "WITH stale AS ("
    "  SELECT purchase_id FROM purchases WHERE status = 'PENDING' AND created_at < $1"
    "  ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED"
    "), expired AS ("
    "  UPDATE purchases p SET status = 'EXPIRED', updated_at = now() FROM stale s"
    "  WHERE p.purchase_id = s.purchase_id"
    "  RETURNING p.purchase_id, p.code, p.user_id, p.discount_minor"
    "), referrals_back AS ("
    "  UPDATE referrals r SET status = 'EXPIRED' FROM expired e"
    "  WHERE r.purchase_id = e.purchase_id AND r.status = 'PENDING'"
    "{give_back}) SELECT count(*) FROM expired"
)
_GIVE_BACK = (
    "), codes AS ("
    "  UPDATE promo_codes c SET uses = c.uses - e.n, budget_spent_minor = c.budget_spent_minor"
    "    - e.d FROM (SELECT code, count(*) AS n, sum(discount_minor) AS d FROM expired"
    "    GROUP BY code) e WHERE c.code = e.code"
    "), holders AS ("
    "  UPDATE user_code_uses x SET uses = x.uses - e.n"
    "  FROM (SELECT code, user_id, count(*) AS n FROM expired GROUP BY code, user_id) e"
    "  WHERE x.code = e.code AND x.user_id = e.user_id"
)


async def page_for_user(
    conn: Any, user_id: str, after: tuple[datetime, str] | None, limit: int
) -> list[Purchase]:
    rows = await conn.fetch(
        "SELECT * FROM purchases WHERE user_id = $1"
        " AND ($2::timestamptz IS NULL OR (created_at, purchase_id) < ($2, $3::uuid))"
        " ORDER BY created_at DESC, purchase_id DESC LIMIT $4",
        user_id,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [to_purchase(r) for r in rows]


async def counts_by_status(conn: Any, code: str) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT status, count(*) AS n FROM purchases WHERE code = $1 GROUP BY status", code
    )
    return {r["status"]: r["n"] for r in rows}
