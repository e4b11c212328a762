"""Promo codes: their settings, audiences and the counters that limit their uses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from common.user_status import UserStatus
from loyalty_service.domain.codes import ActiveCode, CodeTaken, PromoCode
from loyalty_service.domain.eligibility import Attempt
from loyalty_service.domain.pricing import Discount, DiscountKind
from loyalty_service.domain.purchases import Purchase
from loyalty_service.domain.schedule import Duration
from loyalty_service.domain.specs import CodeSpec, MoneyInput
from loyalty_service.store.purchases import LIVE_SQL
from loyalty_service.store.tariffs import to_tariff

# A code's counters live in its slots (uses taken, discount granted): a handful of rows.
COUNTERS = (
    "(SELECT coalesce(sum(s.taken), 0)::int FROM promo_code_slots s WHERE s.code = c.code)"
    " AS uses,"
    " (SELECT coalesce(sum(s.spent_minor), 0)::bigint FROM promo_code_slots s"
    " WHERE s.code = c.code) AS spent_minor,"
    # The code's campaign: its status, and the uses and money left over its slots (NULL: no
    # such limit).
    " (SELECT k.status FROM campaigns k WHERE k.campaign_id = c.campaign_id) AS campaign_status,"
    " (SELECT sum(s.uses_left) FROM campaign_slots s WHERE s.campaign_id = c.campaign_id)::bigint"
    " AS campaign_uses_left,"
    " (SELECT sum(s.budget_left_minor) FROM campaign_slots s"
    " WHERE s.campaign_id = c.campaign_id)::bigint AS campaign_budget_left"
)
_HAS_USES = "EXISTS (SELECT 1 FROM promo_code_slots s WHERE s.code = c.code AND s.uses_left > 0)"
_AUDIENCE = (
    "array(SELECT u.user_id::text FROM promo_code_users u WHERE u.code = c.code"
    " ORDER BY u.user_id) AS user_ids,"
    " array(SELECT g.group_id::text FROM promo_code_groups g WHERE g.code = c.code"
    " ORDER BY g.group_id) AS group_ids"
)
# Whether the user {user} is in the audience of the code `c`: everyone, named, or in a group.
_IN_AUDIENCE = (
    "(c.all_users"
    " OR EXISTS (SELECT 1 FROM promo_code_users a WHERE a.code = c.code AND a.user_id = {user})"
    " OR EXISTS (SELECT 1 FROM promo_code_groups g JOIN group_members m USING (group_id)"
    "            WHERE g.code = c.code AND m.user_id = {user}))"
)
# The status filter of ListPromoCodes, as SQL over a row `c` and the time $now.
STATUS_SQL = {
    "DEACTIVATED": "c.deactivated_at IS NOT NULL",
    "NOT_STARTED": "c.deactivated_at IS NULL AND c.starts_at > {now}",
    "EXPIRED": "c.deactivated_at IS NULL AND coalesce(c.starts_at <= {now}, true)"
    " AND c.ends_at <= {now}",
    "EXHAUSTED": "c.deactivated_at IS NULL AND coalesce(c.starts_at <= {now}, true)"
    " AND coalesce(c.ends_at > {now}, true) AND c.max_uses > 0 AND NOT " + _HAS_USES,
    "ACTIVE": "c.deactivated_at IS NULL AND coalesce(c.starts_at <= {now}, true)"
    " AND coalesce(c.ends_at > {now}, true) AND (c.max_uses = 0 OR " + _HAS_USES + ")",
}


def to_code(row: asyncpg.Record) -> PromoCode:
    return PromoCode(
        code=row["code"],
        discount=Discount(DiscountKind(row["discount_kind"]), row["discount_value"]),
        currency=row["currency"],
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        max_uses=row["max_uses"],
        uses=row["uses"],
        per_user_limit=row["per_user_limit"],
        tariff_ids=tuple(row["tariff_ids"]),
        all_users=row["all_users"],
        deactivated=row["deactivated_at"] is not None,
        duration=Duration(row["duration"]),
        duration_periods=row["duration_periods"],
        max_discount=row["max_discount_minor"],
        budget=row["budget_minor"],
        budget_spent=row["spent_minor"],
        first_purchase_only=row["first_purchase_only"],
        min_price=row["min_price_minor"],
        refund_returns_use=row.get("refund_returns_use", True),
        referrer_id=str(row["referrer_id"]) if row.get("referrer_id") else None,
        description=row["description"],
        created_at=row["created_at"],
        user_ids=tuple(row.get("user_ids") or ()),
        group_ids=tuple(row.get("group_ids") or ()),
        campaign_id=str(row["campaign_id"]) if row.get("campaign_id") else "",
        campaign_status=row.get("campaign_status") or "ACTIVE",
        campaign_uses_left=row.get("campaign_uses_left"),
        campaign_budget_left=row.get("campaign_budget_left"),
    )


def _minor(money: MoneyInput | None) -> int | None:
    return None if money is None else money.amount_minor


def _values(spec: CodeSpec, discount: Discount) -> tuple[Any, ...]:
    return (
        discount.kind.value,
        discount.value,
        spec.starts_at,
        spec.ends_at,
        spec.max_uses,
        spec.per_user_limit,
        list(spec.tariff_ids),
        spec.all_users,
        spec.description,
        spec.duration.value,
        spec.duration_periods,
        _minor(spec.max_discount),
        _minor(spec.budget),
        spec.first_purchase_only,
        _minor(spec.min_price),
        spec.refund_returns_use,
    )


_INSERT_COLUMNS = (
    "code, discount_kind, discount_value, starts_at, ends_at, max_uses, per_user_limit,"
    " tariff_ids, all_users, description, duration, duration_periods, max_discount_minor,"
    " budget_minor, first_purchase_only, min_price_minor, refund_returns_use"
)
_VALUES = ", ".join(f"${n}" for n in range(2, 18))


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _attempt(row: asyncpg.Record, now: datetime) -> Attempt:
    return Attempt(
        to_code(row) if row["code"] is not None else None,
        to_tariff(row, prefix="t_") if row["t_tariff_id"] is not None else None,
        UserStatus(row["user_status"]),
        bool(row["in_audience"]),
        row["user_uses"],
        now,
        bool(row["has_purchase"]),
    )


async def attempt(conn: Any, code: str, tariff_id: str, user_id: str, now: datetime) -> Attempt:
    """One read with all an eligibility decision needs (None where nothing matches). The
    use cases ask loyalty_decide (store/redemption.py) instead, so it is on no port; this
    read feeds the Python rules, the reference tests/integration/test_loyalty_sql_rules.py
    holds the SQL to."""
    row = await conn.fetchrow(
        f"SELECT c.*, {COUNTERS}, t.tariff_id AS t_tariff_id, t.name AS t_name,"
        "  t.price_minor AS t_price_minor, t.currency AS t_currency,"
        "  t.period_days AS t_period_days,"
        "  coalesce(u.status, 'ACTIVE') AS user_status,"
        "  coalesce((SELECT uses FROM user_code_uses x WHERE x.code = c.code AND x.user_id = $3),"
        "    0) AS user_uses,"
        "  EXISTS (SELECT 1 FROM purchases p WHERE p.user_id = $3"
        f"    AND p.status IN {LIVE_SQL}) AS has_purchase,"
        f"  {_IN_AUDIENCE.format(user='$3')} AS in_audience"
        " FROM (SELECT 1) one"
        " LEFT JOIN promo_codes c ON c.code = $1"
        " LEFT JOIN tariffs t ON t.tariff_id = $2"
        " LEFT JOIN users u ON u.user_id = $3",
        code,
        tariff_id,
        user_id,
    )
    return _attempt(row, now)


class PgCodes:
    """Promo codes over a connection or the pool (CodesRepository)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def insert(self, code: str, spec: CodeSpec, discount: Discount) -> None:
        try:
            await self._conn.execute(
                f"INSERT INTO promo_codes ({_INSERT_COLUMNS}) VALUES ($1, {_VALUES})",
                code,
                *_values(spec, discount),
            )
        except asyncpg.UniqueViolationError:
            raise CodeTaken(code) from None

    async def insert_batch(self, codes: list[str], spec: CodeSpec, discount: Discount) -> list[str]:
        """Inserts the codes not taken yet; returns those it inserted."""
        rows = await self._conn.fetch(
            f"INSERT INTO promo_codes ({_INSERT_COLUMNS})"
            f" SELECT c, {_VALUES} FROM unnest($1::text[]) c"
            " ON CONFLICT (code) DO NOTHING RETURNING code",
            codes,
            *_values(spec, discount),
        )
        return [r["code"] for r in rows]

    async def add_audience(
        self, codes: list[str], user_ids: list[str], group_ids: list[str]
    ) -> None:
        if user_ids:
            await self._conn.execute(
                "INSERT INTO promo_code_users (code, user_id)"
                " SELECT c, u FROM unnest($1::text[]) c, unnest($2::uuid[]) u"
                " ON CONFLICT DO NOTHING",
                codes,
                user_ids,
            )
        if group_ids:
            await self._conn.execute(
                "INSERT INTO promo_code_groups (code, group_id)"
                " SELECT c, g FROM unnest($1::text[]) c, unnest($2::uuid[]) g"
                " ON CONFLICT DO NOTHING",
                codes,
                group_ids,
            )

    async def get(self, code: str) -> PromoCode | None:
        row = await self._conn.fetchrow(
            f"SELECT c.*, {COUNTERS}, {_AUDIENCE} FROM promo_codes c WHERE c.code = $1", code
        )
        return None if row is None else to_code(row)

    async def page(
        self, after: str | None, limit: int, query: str, status: str, now: datetime
    ) -> list[PromoCode]:
        condition = STATUS_SQL[status] if status else "true"
        params: list[Any] = [after, _like_escaped(query), limit]
        if "{now}" in condition:
            params.append(now)
        rows = await self._conn.fetch(
            f"SELECT c.*, {COUNTERS}, {_AUDIENCE} FROM promo_codes c"
            # Personal referral codes (priced by the program, not the row) are not listed.
            " WHERE c.referrer_id IS NULL"
            "   AND ($1::text IS NULL OR c.code > $1) AND c.code LIKE '%' || $2 || '%' ESCAPE '\\'"
            f" AND {condition.format(now='$4')} ORDER BY c.code LIMIT $3",
            *params,
        )
        return [to_code(r) for r in rows]

    async def deactivate(self, code: str) -> bool:
        found = await self._conn.fetchval(
            "UPDATE promo_codes SET deactivated_at = coalesce(deactivated_at, now())"
            " WHERE code = $1 RETURNING true",
            code,
        )
        return bool(found)

    async def give_back(self, purchase: Purchase) -> None:
        """A cancelled or expired purchase's use and discount, back into the slot it came from,
        and the user's use back."""
        await self._conn.execute(
            "SELECT loyalty_give_back($1, $2, 1, $3)",
            purchase.code,
            purchase.slot,
            purchase.discount,
        )
        await self._conn.execute(
            "UPDATE user_code_uses SET uses = uses - 1 WHERE code = $1 AND user_id = $2",
            purchase.code,
            purchase.user_id,
        )

    async def active_for_user(
        self, user_id: str, now: datetime, after: tuple[str, str] | None, limit: int
    ) -> list[ActiveCode]:
        """A page of the codes `user_id` could apply now, ending soonest first; `after` is the
        (ends_at as text, 'infinity' for none; code) of the last code of the page before."""
        rows = await self._conn.fetch(
            f"SELECT c.*, {COUNTERS}, coalesce(x.uses, 0) AS user_uses FROM promo_codes c"
            " LEFT JOIN user_code_uses x ON x.code = c.code AND x.user_id = $1"
            f" WHERE {STATUS_SQL['ACTIVE'].format(now='$2')}"
            "   AND (c.per_user_limit = 0 OR coalesce(x.uses, 0) < c.per_user_limit)"
            "   AND (c.budget_minor IS NULL OR c.budget_spent_minor < c.budget_minor)"
            # Nor a code of a paused or ended campaign, nor of one whose limits are spent.
            "   AND NOT EXISTS (SELECT 1 FROM campaigns k WHERE k.campaign_id = c.campaign_id"
            "     AND k.status <> 'ACTIVE')"
            "   AND NOT EXISTS (SELECT 1 FROM campaign_slots s WHERE s.campaign_id = c.campaign_id"
            "     HAVING sum(s.uses_left) < 1 OR sum(s.budget_left_minor) < 1)"
            "   AND (NOT c.first_purchase_only OR NOT EXISTS (SELECT 1 FROM purchases p"
            f"     WHERE p.user_id = $1 AND p.status IN {LIVE_SQL}))"
            f"   AND {_IN_AUDIENCE.format(user='$1')}"
            "   AND ($3::text IS NULL"
            "     OR (coalesce(c.ends_at, 'infinity'), c.code) > ($3::text::timestamptz, $4))"
            " ORDER BY coalesce(c.ends_at, 'infinity'), c.code LIMIT $5",
            user_id,
            now,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
        return [ActiveCode(to_code(r), r["user_uses"]) for r in rows]
