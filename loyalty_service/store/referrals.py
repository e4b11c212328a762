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

_LIVE = "('PENDING', 'COMPLETED')"


def _program(row: Any) -> ReferralProgram:
    return ReferralProgram(
        enabled=row["enabled"],
        referee=Discount(DiscountKind(row["referee_kind"]), row["referee_value"]),
        reward=Discount(DiscountKind(row["reward_kind"]), row["reward_value"]),
        reward_valid_days=row["reward_valid_days"],
        max_rewards_per_referrer=row["max_rewards_per_referrer"],
    )


async def program(conn: Any) -> ReferralProgram:
    return _program(await conn.fetchrow("SELECT * FROM referral_program"))


async def set_program(conn: Any, value: ReferralProgram) -> ReferralProgram:
    row = await conn.fetchrow(
        "UPDATE referral_program SET enabled = $1, referee_kind = $2, referee_value = $3,"
        " reward_kind = $4, reward_value = $5, reward_valid_days = $6,"
        " max_rewards_per_referrer = $7, updated_at = now() RETURNING *",
        value.enabled,
        value.referee.kind.value,
        value.referee.value,
        value.reward.kind.value,
        value.reward.value,
        value.reward_valid_days,
        value.max_rewards_per_referrer,
    )
    return _program(row)


async def personal_code(conn: Any, user_id: str) -> PersonalCode | None:
    row = await conn.fetchrow(
        "SELECT r.code, r.rewards_issued,"
        f"  (SELECT count(*) FROM referrals x WHERE x.referrer_id = $1 AND x.status IN {_LIVE})"
        "   AS referred"
        " FROM referral_codes r WHERE r.user_id = $1",
        user_id,
    )
    if row is None:
        return None
    return PersonalCode(user_id, row["code"], row["referred"], row["rewards_issued"])


async def insert_code_row(conn: Any, code: str, user_id: str) -> bool:
    """The promo code row a referral code is; False when the text is taken."""
    inserted = await conn.fetchval(
        "INSERT INTO promo_codes (code, discount_kind, discount_value, per_user_limit,"
        " max_uses, all_users, description, referrer_id)"
        " VALUES ($1, 'PERCENT_OFF', 0, 0, 0, false, 'referral code', $2)"
        " ON CONFLICT (code) DO NOTHING RETURNING true",
        code,
        user_id,
    )
    return bool(inserted)


async def claim_personal_code(conn: Any, user_id: str, code: str) -> bool:
    """Makes `code` this user's; False when they already have one (a concurrent request)."""
    claimed = await conn.fetchval(
        "INSERT INTO referral_codes (user_id, code) VALUES ($1, $2)"
        " ON CONFLICT (user_id) DO NOTHING RETURNING true",
        user_id,
        code,
    )
    return bool(claimed)


async def referee_history(conn: Any, user_id: str) -> RefereeHistory:
    row = await conn.fetchrow(
        "SELECT EXISTS (SELECT 1 FROM referrals"
        f"   WHERE referee_id = $1 AND status IN {_LIVE}) AS referred,"
        " EXISTS (SELECT 1 FROM purchases WHERE user_id = $1 AND status IN"
        f"   {_LIVE}) AS bought",
        user_id,
    )
    return RefereeHistory(row["referred"], row["bought"])


async def end(conn: Any, purchase_id: str, status: str) -> str | None:
    """A cancelled (or refunded) purchase gives its referral back: the user may be referred
    again. Returns the referrer, None when the purchase was no referral. A live referral's
    status follows its purchase's, so a refund finds it COMPLETED and a cancel PENDING."""
    referrer: Any = await conn.fetchval(
        "UPDATE referrals SET status = $2 WHERE purchase_id = $1"
        " AND status IN ('PENDING', 'COMPLETED')"
        " RETURNING referrer_id::text",
        purchase_id,
        status,
    )
    return None if referrer is None else str(referrer)


async def complete(conn: Any, purchase_id: str) -> Referral | None:
    """Marks the referral of a purchase being confirmed completed; None when it has none."""
    row = await conn.fetchrow(
        "UPDATE referrals SET status = 'COMPLETED' WHERE purchase_id = $1 AND status = 'PENDING'"
        " RETURNING referee_id::text, referrer_id::text",
        purchase_id,
    )
    return None if row is None else Referral(purchase_id, row["referee_id"], row["referrer_id"])


async def take_reward(conn: Any, referrer_id: str, cap: int) -> bool:
    """Counts one reward unless the cap (0: none) is reached: one conditional statement."""
    taken = await conn.fetchval(
        "UPDATE referral_codes SET rewards_issued = rewards_issued + 1"
        " WHERE user_id = $1 AND ($2 = 0 OR rewards_issued < $2) RETURNING true",
        referrer_id,
        cap,
    )
    return bool(taken)


async def record_outcome(
    conn: Any, referral: Referral, code: str | None, withheld: str | None
) -> None:
    """One row per referred purchase, ever: a second one is a primary-key violation."""
    await conn.execute(
        "INSERT INTO referral_rewards (purchase_id, referrer_id, outcome, reason, code)"
        " VALUES ($1, $2, $3, $4, $5)",
        referral.purchase_id,
        referral.referrer_id,
        "ISSUED" if code else "WITHHELD",
        withheld,
        code,
    )


async def _counts(conn: Any, sql: str) -> dict[str, int]:
    return {r["k"]: r["n"] for r in await conn.fetch(sql)}


async def totals(conn: Any, top: int) -> ReferralTotals:
    by_status = await _counts(conn, "SELECT status AS k, count(*) AS n FROM referrals GROUP BY 1")
    outcomes = await _counts(
        conn,
        "SELECT coalesce(reason, outcome) AS k, count(*) AS n FROM referral_rewards GROUP BY 1",
    )
    rejections = await _counts(
        conn,
        "SELECT reason AS k, sum(count)::bigint AS n FROM rejection_counts"
        " WHERE reason LIKE 'REFERRAL\\_%' OR code IN (SELECT code FROM referral_codes)"
        " GROUP BY 1",
    )
    return ReferralTotals(
        started=sum(by_status.values()),
        completed=by_status.get("COMPLETED", 0),
        given_back=by_status.get("CANCELLED", 0) + by_status.get("EXPIRED", 0),
        rewards_issued=outcomes.pop("ISSUED", 0),
        withheld_by_reason=outcomes,
        rejections_by_reason=rejections,
        top_referrers=await _top(conn, top),
    )


async def _top(conn: Any, limit: int) -> list[TopReferrer]:
    rows = await conn.fetch(
        "SELECT c.user_id::text AS user_id, c.code, c.rewards_issued,"
        f"  count(r.*) FILTER (WHERE r.status IN {_LIVE}) AS referred,"
        "  count(r.*) FILTER (WHERE r.status = 'COMPLETED') AS completed"
        " FROM referral_codes c JOIN referrals r ON r.referrer_id = c.user_id"
        " GROUP BY c.user_id, c.code, c.rewards_issued"
        " ORDER BY completed DESC, referred DESC, c.user_id LIMIT $1",
        limit,
    )
    return [TopReferrer(r["user_id"], r["code"], r["referred"], r["rewards_issued"]) for r in rows]
