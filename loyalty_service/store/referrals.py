"""The referral program, personal codes, referrals and their rewards."""

from __future__ import annotations

from typing import Any

from loyalty_service.domain.pricing import Discount, DiscountKind
from loyalty_service.domain.referrals import (
    PersonalCode,
    RefereeHistory,
    Referral,
    ReferralProgram,
    ReferralTotals,
    TopReferrer,
)
from loyalty_service.store.purchases import LIVE_SQL

# Rewards the referrer received and kept (domain.referrals.KEPT).
_KEPT = "w.outcome IN ('ISSUED', 'CLAWBACK_FAILED')"


def _program(row: Any) -> ReferralProgram:
    return ReferralProgram(
        enabled=row["enabled"],
        referee=Discount(DiscountKind(row["referee_kind"]), row["referee_value"]),
        reward=Discount(DiscountKind(row["reward_kind"]), row["reward_value"]),
        reward_valid_days=row["reward_valid_days"],
        max_rewards_per_referrer=row["max_rewards_per_referrer"],
        reward_hold_seconds=row["reward_hold_seconds"],
        max_rewards_per_referrer_per_day=row["max_rewards_per_referrer_per_day"],
    )


async def referee_history(conn: Any, user_id: str) -> RefereeHistory:
    """What the referral rules (domain/referrals.py) read of the buyer: the Python reference
    that tests/integration/test_loyalty_sql_rules.py holds loyalty_decide to. No use case
    reads it (the use's one statement does), so it is on no port."""
    row = await conn.fetchrow(
        "SELECT EXISTS (SELECT 1 FROM referrals"
        f"   WHERE referee_id = $1 AND status IN {LIVE_SQL}) AS referred,"
        " EXISTS (SELECT 1 FROM purchases WHERE user_id = $1 AND status IN"
        f"   {LIVE_SQL}) AS bought",
        user_id,
    )
    return RefereeHistory(row["referred"], row["bought"])


class PgReferrals:
    """Referrals over a connection or the pool (ReferralsRepository)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def program(self) -> ReferralProgram:
        return _program(await self._conn.fetchrow("SELECT * FROM referral_program"))

    async def set_program(self, value: ReferralProgram) -> ReferralProgram:
        row = await self._conn.fetchrow(
            "UPDATE referral_program SET enabled = $1, referee_kind = $2, referee_value = $3,"
            " reward_kind = $4, reward_value = $5, reward_valid_days = $6,"
            " max_rewards_per_referrer = $7, reward_hold_seconds = $8,"
            " max_rewards_per_referrer_per_day = $9, updated_at = now() RETURNING *",
            value.enabled,
            value.referee.kind.value,
            value.referee.value,
            value.reward.kind.value,
            value.reward.value,
            value.reward_valid_days,
            value.max_rewards_per_referrer,
            value.reward_hold_seconds,
            value.max_rewards_per_referrer_per_day,
        )
        return _program(row)

    async def personal_code(self, user_id: str) -> PersonalCode | None:
        row = await self._conn.fetchrow(
            "SELECT r.code,"
            "  (SELECT count(*) FROM referrals x"
            f"   WHERE x.referrer_id = $1 AND x.status IN {LIVE_SQL})"
            "   AS referred,"
            f"  (SELECT count(*) FROM referral_rewards w WHERE w.referrer_id = $1 AND {_KEPT})"
            "   AS issued,"
            "  (SELECT count(*) FROM referral_rewards w WHERE w.referrer_id = $1"
            "   AND w.outcome IN ('PENDING', 'HELD_FOR_REVIEW')) AS pending"
            " FROM referral_codes r WHERE r.user_id = $1",
            user_id,
        )
        if row is None:
            return None
        return PersonalCode(user_id, row["code"], row["referred"], row["issued"], row["pending"])

    async def insert_code_row(self, code: str, user_id: str) -> bool:
        """The promo code row a referral code is; False when the text is taken."""
        inserted = await self._conn.fetchval(
            "INSERT INTO promo_codes (code, discount_kind, discount_value, per_user_limit,"
            " max_uses, all_users, description, referrer_id)"
            " VALUES ($1, 'PERCENT_OFF', 0, 0, 0, false, 'referral code', $2)"
            " ON CONFLICT (code) DO NOTHING RETURNING true",
            code,
            user_id,
        )
        return bool(inserted)

    async def claim_personal_code(self, user_id: str, code: str) -> bool:
        """Makes `code` this user's; False when they already have one (a concurrent request)."""
        claimed = await self._conn.fetchval(
            "INSERT INTO referral_codes (user_id, code) VALUES ($1, $2)"
            " ON CONFLICT (user_id) DO NOTHING RETURNING true",
            user_id,
            code,
        )
        return bool(claimed)

    async def end(self, purchase_id: str, status: str) -> str | None:
        """A cancelled purchase gives its referral back: the user may be referred again. Returns
        the referrer, None when the purchase was no referral."""
        referrer: Any = await self._conn.fetchval(
            "UPDATE referrals SET status = $2 WHERE purchase_id = $1 AND status = 'PENDING'"
            " RETURNING referrer_id::text",
            purchase_id,
            status,
        )
        return None if referrer is None else str(referrer)

    async def complete(self, purchase_id: str) -> Referral | None:
        """Marks the referral of a purchase being confirmed completed; None when it has none."""
        row = await self._conn.fetchrow(
            "UPDATE referrals SET status = 'COMPLETED'"
            " WHERE purchase_id = $1 AND status = 'PENDING'"
            " RETURNING referee_id::text, referrer_id::text",
            purchase_id,
        )
        return None if row is None else Referral(purchase_id, row["referee_id"], row["referrer_id"])

    async def _counts(self, sql: str) -> dict[str, int]:
        return {r["k"]: r["n"] for r in await self._conn.fetch(sql)}

    async def totals(self, top: int) -> ReferralTotals:
        by_status = await self._counts(
            "SELECT status AS k, count(*) AS n FROM referrals GROUP BY 1"
        )
        outcomes = await self._counts(
            f"SELECT CASE WHEN {_KEPT} THEN 'KEPT' ELSE coalesce(w.reason, w.outcome) END AS k,"
            " count(*) AS n FROM referral_rewards w"
            " WHERE w.outcome IN ('ISSUED', 'CLAWBACK_FAILED', 'WITHHELD') GROUP BY 1",
        )
        rejections = await self._counts(
            "SELECT reason AS k, sum(count)::bigint AS n FROM rejection_counts"
            " WHERE reason LIKE 'REFERRAL\\_%' OR code IN (SELECT code FROM referral_codes)"
            " GROUP BY 1",
        )
        return ReferralTotals(
            started=sum(by_status.values()),
            completed=by_status.get("COMPLETED", 0),
            given_back=by_status.get("CANCELLED", 0) + by_status.get("EXPIRED", 0),
            rewards_issued=outcomes.pop("KEPT", 0),
            withheld_by_reason=outcomes,
            rejections_by_reason=rejections,
            top_referrers=await self._top(top),
        )

    async def _top(self, limit: int) -> list[TopReferrer]:
        rows = await self._conn.fetch(
            "SELECT c.user_id::text AS user_id, c.code,"
            "  (SELECT count(*) FROM referral_rewards w"
            f"   WHERE w.referrer_id = c.user_id AND {_KEPT}) AS rewards_issued,"
            f"  count(r.*) FILTER (WHERE r.status IN {LIVE_SQL}) AS referred,"
            "  count(r.*) FILTER (WHERE r.status = 'COMPLETED') AS completed"
            " FROM referral_codes c JOIN referrals r ON r.referrer_id = c.user_id"
            " GROUP BY c.user_id, c.code"
            " ORDER BY completed DESC, referred DESC, c.user_id LIMIT $1",
            limit,
        )
        return [
            TopReferrer(r["user_id"], r["code"], r["referred"], r["rewards_issued"]) for r in rows
        ]
