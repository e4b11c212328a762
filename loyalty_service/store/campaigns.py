"""Campaigns: their rules, status, counter slots, codes, report and audit (CampaignsRepository).

Each method that writes is one transaction, with its audit row in it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg

from loyalty_service.domain.campaigns import (
    AuditEntry,
    Campaign,
    CampaignInput,
    CampaignKind,
    CampaignReport,
    CampaignStatus,
    CodeSpaceExhausted,
)
from loyalty_service.domain.codes import PromoCode
from loyalty_service.domain.reports import DayStats
from loyalty_service.domain.schedule import Duration
from loyalty_service.domain.specs import CodeSpec, MoneyInput, discount_of
from loyalty_service.store.codes import COUNTERS, to_code
from loyalty_service.store.purchases import LIVE_SQL

# Uses and discounts of a campaign: sums over its codes' slots (every use takes one there).
_FIGURES = (
    "(SELECT count(*) FROM promo_codes c WHERE c.campaign_id = k.campaign_id) AS code_count,"
    " (SELECT coalesce(sum(s.taken), 0) FROM promo_codes c JOIN promo_code_slots s"
    "   ON s.code = c.code WHERE c.campaign_id = k.campaign_id)::bigint AS uses_taken,"
    " (SELECT coalesce(sum(s.spent_minor), 0) FROM promo_codes c JOIN promo_code_slots s"
    "   ON s.code = c.code WHERE c.campaign_id = k.campaign_id)::bigint AS budget_spent"
)
_RULE_COLUMNS = (
    "discount_kind, discount_value, currency, starts_at, ends_at, per_user_limit, tariff_ids,"
    " all_users, duration, duration_periods, max_discount_minor, first_purchase_only,"
    " min_price_minor, refund_returns_use"
)
_INSERT_CAMPAIGN = (
    "INSERT INTO campaigns (campaign_id, name, description, kind, max_uses, budget_minor,"
    " created_by, audience_user_ids, audience_group_ids, "
    + _RULE_COLUMNS
    + ") VALUES ($1, $2, $3, 'CAMPAIGN', $4, $5, $6, $7, $8, "
    + ", ".join(f"${n}" for n in range(9, 23))
    + ")"
)
# The campaign's codes, each with a copy of its rules and a use limit of its own.
_INSERT_CODES = (
    "INSERT INTO promo_codes (code, campaign_id, max_uses, description, "
    + _RULE_COLUMNS
    + ") SELECT x, k.campaign_id, $3, k.description, "
    + ", ".join(f"k.{c.strip()}" for c in _RULE_COLUMNS.split(","))
    + " FROM campaigns k, unnest($2::text[]) x WHERE k.campaign_id = $1"
    " ON CONFLICT (code) DO NOTHING RETURNING code"
)
_DAILY = f"""
WITH codes AS (SELECT code FROM promo_codes WHERE campaign_id = $1),
activity AS (
    SELECT (p.created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS uses, 0 AS confirms,
           0 AS cancels, 0 AS refunds, 0 AS rejections,
           coalesce(sum(p.discount_minor) FILTER (WHERE p.status IN {LIVE_SQL}), 0) AS granted
      FROM purchases p JOIN codes USING (code)
     WHERE p.created_at >= $2 AND p.created_at < $3 GROUP BY 1
    UNION ALL
    SELECT (p.updated_at AT TIME ZONE 'UTC')::date, 0,
           count(*) FILTER (WHERE p.status = 'COMPLETED'),
           count(*) FILTER (WHERE p.status IN ('CANCELLED', 'EXPIRED')),
           count(*) FILTER (WHERE p.status = 'REFUNDED'), 0, 0
      FROM purchases p JOIN codes USING (code)
     WHERE p.status <> 'PENDING' AND p.updated_at >= $2 AND p.updated_at < $3 GROUP BY 1
    UNION ALL
    SELECT (r.occurred_at AT TIME ZONE 'UTC')::date, 0, 0, 0, 0, count(*), 0
      FROM rejections r JOIN codes USING (code)
     WHERE r.occurred_at >= $2 AND r.occurred_at < $3 GROUP BY 1
)
SELECT to_char(day, 'YYYY-MM-DD') AS day, sum(uses)::bigint AS uses,
       sum(confirms)::bigint AS confirms, sum(cancels)::bigint AS cancels,
       sum(refunds)::bigint AS refunds, sum(rejections)::bigint AS rejections,
       sum(granted)::bigint AS granted
  FROM activity GROUP BY day ORDER BY day
"""
_BY_STATUS = (
    "SELECT p.status, count(*) AS n FROM purchases p"
    " JOIN promo_codes c ON c.code = p.code AND c.campaign_id = $1"
    " WHERE p.created_at >= $2 AND p.created_at < $3 GROUP BY p.status"
)
_BY_REASON = (
    "SELECT r.reason, count(*) AS n FROM rejections r"
    " JOIN promo_codes c ON c.code = r.code AND c.campaign_id = $1"
    " WHERE r.occurred_at >= $2 AND r.occurred_at < $3 GROUP BY r.reason"
)


def _money(amount: int | None, currency: str) -> MoneyInput | None:
    return None if amount is None else MoneyInput(amount, currency)


def _rules(row: asyncpg.Record) -> CodeSpec:
    kind, value, currency = row["discount_kind"], row["discount_value"], row["currency"]
    return CodeSpec(
        fixed_price=_money(value, currency) if kind == "FIXED_PRICE" else None,
        percent_off=value if kind == "PERCENT_OFF" else None,
        amount_off=_money(value, currency) if kind == "AMOUNT_OFF" else None,
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        per_user_limit=row["per_user_limit"],
        tariff_ids=tuple(row["tariff_ids"]),
        all_users=row["all_users"],
        user_ids=tuple(str(u) for u in row["audience_user_ids"]),
        group_ids=tuple(str(g) for g in row["audience_group_ids"]),
        description=row["description"],
        duration=Duration(row["duration"]),
        duration_periods=row["duration_periods"],
        max_discount=_money(row["max_discount_minor"], currency),
        first_purchase_only=row["first_purchase_only"],
        min_price=_money(row["min_price_minor"], currency),
    )


def to_campaign(row: asyncpg.Record) -> Campaign:
    return Campaign(
        campaign_id=str(row["campaign_id"]),
        name=row["name"],
        description=row["description"],
        kind=CampaignKind(row["kind"]),
        status=CampaignStatus(row["status"]),
        rules=_rules(row),
        max_uses=row["max_uses"],
        budget=row["budget_minor"],
        uses_taken=row["uses_taken"],
        budget_spent=row["budget_spent"],
        code_count=row["code_count"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _rule_values(rules: CodeSpec) -> tuple[Any, ...]:
    discount = discount_of(rules)
    return (
        discount.kind.value,
        discount.value,
        "RUB",
        rules.starts_at,
        rules.ends_at,
        rules.per_user_limit,
        list(rules.tariff_ids),
        rules.all_users,
        rules.duration.value,
        rules.duration_periods,
        None if rules.max_discount is None else rules.max_discount.amount_minor,
        rules.first_purchase_only,
        None if rules.min_price is None else rules.min_price.amount_minor,
        rules.refund_returns_use,
    )


def _bounds(first: date, last: date) -> tuple[datetime, datetime]:
    return (
        datetime.combine(first, time(), UTC),
        datetime.combine(last + timedelta(days=1), time(), UTC),
    )


def _day(row: asyncpg.Record) -> DayStats:
    return DayStats(
        row["day"], row["uses"], row["confirms"], row["cancels"], row["rejections"], row["granted"]
    )


def _entry(row: asyncpg.Record) -> AuditEntry:
    return AuditEntry(
        row["audit_id"],
        str(row["campaign_id"]),
        row["action"],
        row["code"],
        row["detail"],
        row["actor_id"],
        row["at"],
    )


async def _audit(
    conn: Any, campaign_id: str, action: str, actor: str, code: str = "", detail: str = ""
) -> None:
    await conn.execute(
        "INSERT INTO campaign_audit (campaign_id, action, code, detail, actor_id)"
        " VALUES ($1, $2, $3, $4, $5)",
        campaign_id,
        action,
        code,
        detail,
        actor,
    )


class PgCampaigns:
    """Campaigns over the pool (CampaignsRepository)."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def create(
        self,
        campaign_id: str,
        campaign: CampaignInput,
        slots: list[tuple[int | None, int | None]],
        actor: str,
    ) -> None:
        rules = campaign.rules
        budget = None if campaign.budget is None else campaign.budget.amount_minor
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                _INSERT_CAMPAIGN,
                campaign_id,
                campaign.name.strip(),
                campaign.description,
                campaign.max_uses,
                budget,
                actor,
                list(rules.user_ids),
                list(rules.group_ids),
                *_rule_values(rules),
            )
            await conn.executemany(
                "INSERT INTO campaign_slots (campaign_id, slot, uses_left, budget_left_minor)"
                " VALUES ($1, $2, $3, $4)",
                [(campaign_id, n, uses, money) for n, (uses, money) in enumerate(slots)],
            )
            await _audit(conn, campaign_id, "CREATED", actor, detail=campaign.name.strip())

    async def get(self, campaign_id: str) -> Campaign | None:
        row = await self._pool.fetchrow(
            f"SELECT k.*, {_FIGURES} FROM campaigns k WHERE k.campaign_id = $1", campaign_id
        )
        return None if row is None else to_campaign(row)

    async def page(
        self,
        query: str,
        status: str,
        created_from: datetime | None,
        created_to: datetime | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Campaign]:
        """Newest first; `query` matches a part of the name, or one of its codes exactly."""
        rows = await self._pool.fetch(
            f"SELECT k.*, {_FIGURES} FROM campaigns k"
            " WHERE k.kind <> 'REFERRAL'"
            "   AND ($1 = '' OR k.name ILIKE '%' || $1 || '%' ESCAPE '\\'"
            "        OR EXISTS (SELECT 1 FROM promo_codes c"
            "                    WHERE c.code = upper($1) AND c.campaign_id = k.campaign_id))"
            "   AND ($2 = '' OR k.status = $2)"
            "   AND ($3::timestamptz IS NULL OR k.created_at >= $3)"
            "   AND ($4::timestamptz IS NULL OR k.created_at < $4)"
            "   AND ($5::timestamptz IS NULL OR (k.created_at, k.campaign_id) < ($5, $6::uuid))"
            " ORDER BY k.created_at DESC, k.campaign_id DESC LIMIT $7",
            query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"),
            status,
            created_from,
            created_to,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
        return [to_campaign(r) for r in rows]

    async def set_status(
        self, campaign_id: str, current: CampaignStatus, wanted: CampaignStatus, actor: str
    ) -> bool:
        """Moves the campaign from `current` to `wanted`; False when it was no longer there."""
        async with self._pool.acquire() as conn, conn.transaction():
            moved = await conn.fetchval(
                "UPDATE campaigns SET status = $3, updated_at = now()"
                " WHERE campaign_id = $1 AND status = $2 RETURNING true",
                campaign_id,
                current.value,
                wanted.value,
            )
            if moved:
                await _audit(conn, campaign_id, wanted.value, actor)
            return bool(moved)

    async def add_codes(
        self,
        campaign_id: str,
        make: Callable[[int], list[str]],
        count: int,
        max_uses: int,
        actor: str,
        rounds: int,
    ) -> list[str]:
        """`count` new codes drawn from `make(wanted)` (regenerating those that collide, up to
        `rounds` times), with the campaign's audience; all or nothing. Fewer than `count`
        when the rounds ran out (nothing is kept then)."""
        async with self._pool.acquire() as conn, conn.transaction():
            made: list[str] = []
            for _ in range(rounds):
                rows = await conn.fetch(
                    _INSERT_CODES, campaign_id, make(count - len(made)), max_uses
                )
                made += [r["code"] for r in rows]
                if len(made) == count:
                    await self._audience(conn, campaign_id, made)
                    await _audit(conn, campaign_id, "CODES_ADDED", actor, detail=str(count))
                    return made
            raise CodeSpaceExhausted(len(made))

    async def _audience(self, conn: Any, campaign_id: str, codes: list[str]) -> None:
        await conn.execute(
            "INSERT INTO promo_code_users (code, user_id)"
            " SELECT x, u FROM campaigns k, unnest(k.audience_user_ids) u, unnest($2::text[]) x"
            " WHERE k.campaign_id = $1",
            campaign_id,
            codes,
        )
        await conn.execute(
            "INSERT INTO promo_code_groups (code, group_id)"
            " SELECT x, g FROM campaigns k, unnest(k.audience_group_ids) g, unnest($2::text[]) x"
            " WHERE k.campaign_id = $1",
            campaign_id,
            codes,
        )

    async def campaign_of(self, code: str) -> Campaign | None:
        row = await self._pool.fetchrow(
            f"SELECT k.*, {_FIGURES} FROM campaigns k"
            " WHERE k.campaign_id = (SELECT c.campaign_id FROM promo_codes c WHERE c.code = $1)",
            code,
        )
        return None if row is None else to_campaign(row)

    async def set_code_active(self, code: str, active: bool, actor: str) -> bool:
        """Deactivates or reactivates the code, with its audit row; False: no such code."""
        async with self._pool.acquire() as conn, conn.transaction():
            campaign_id = await conn.fetchval(
                "UPDATE promo_codes SET deactivated_at = CASE WHEN $2 THEN NULL"
                " ELSE coalesce(deactivated_at, now()) END WHERE code = $1 RETURNING campaign_id",
                code,
                active,
            )
            if campaign_id is None:
                return False
            action = "CODE_REACTIVATED" if active else "CODE_DEACTIVATED"
            await _audit(conn, campaign_id, action, actor, code=code)
            return True

    async def codes(self, campaign_id: str, after: str | None, limit: int) -> list[PromoCode]:
        rows = await self._pool.fetch(
            f"SELECT c.*, {COUNTERS} FROM promo_codes c WHERE c.campaign_id = $1"
            " AND ($2::text IS NULL OR c.code > $2) ORDER BY c.code LIMIT $3",
            campaign_id,
            after,
            limit,
        )
        return [to_code(r) for r in rows]

    async def report(self, campaign: Campaign, first: date, last: date) -> CampaignReport:
        start, end = _bounds(first, last)
        key = campaign.campaign_id
        async with self._pool.acquire() as conn:
            days = await conn.fetch(_DAILY, key, start, end)
            statuses = await conn.fetch(_BY_STATUS, key, start, end)
            reasons = await conn.fetch(_BY_REASON, key, start, end)
        return CampaignReport(
            campaign,
            first,
            last,
            {r["status"]: r["n"] for r in statuses},
            {r["reason"]: r["n"] for r in reasons},
            [_day(r) for r in days],
            {r["day"]: r["refunds"] for r in days if r["refunds"]},
        )

    async def audit(self, campaign_id: str, after: int | None, limit: int) -> list[AuditEntry]:
        rows = await self._pool.fetch(
            "SELECT * FROM campaign_audit WHERE campaign_id = $1"
            " AND ($2::bigint IS NULL OR audit_id > $2) ORDER BY audit_id LIMIT $3",
            campaign_id,
            after,
            limit,
        )
        return [_entry(r) for r in rows]
