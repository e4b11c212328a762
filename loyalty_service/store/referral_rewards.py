"""The life of a referral's reward: the cap slot taken at the confirm, the held row, the
sweeper's claim, the conditional moves between states, the clawback of a released code, the
fraud signals' facts and the admin's list. Satisfies ReferralRewardsRepository directly.

Every move is `UPDATE … WHERE outcome = <the state it leaves>` in the transaction of the
change that causes it (the confirm, the release that creates the code, the refund, the
review), so a refund racing the release, two sweepers or a crash move a reward once."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from loyalty_service.domain.referrals import (
    Referral,
    ReferralReward,
    RewardState,
    RewardTotals,
    Signal,
    SignalFacts,
    Withheld,
)

_LIVE = "('PENDING', 'COMPLETED')"
_COLUMNS = (
    "w.purchase_id::text AS purchase_id, w.referrer_id::text AS referrer_id,"
    " r.referee_id::text AS referee_id, r.code AS referral_code, w.outcome, w.signal,"
    " w.reason, w.code AS reward_code, w.created_at, w.release_at, w.reviewed_by,"
    " w.reviewed_at"
)
_FROM = " FROM referral_rewards w JOIN referrals r USING (purchase_id)"

# One conditional statement takes a slot under both caps, so concurrent confirms cannot
# pass either (the row lock orders them); the day count restarts on a new UTC day.
_TAKE_SLOT = (
    "UPDATE referral_codes SET rewards_issued = rewards_issued + 1, rewards_day = $4,"
    " rewards_that_day = CASE WHEN rewards_day = $4 THEN rewards_that_day + 1 ELSE 1 END"
    " WHERE user_id = $1 AND ($2 = 0 OR rewards_issued < $2)"
    " AND ($3 = 0 OR rewards_day IS DISTINCT FROM $4 OR rewards_that_day < $3)"
    " RETURNING true"
)
# Which cap refused it (read after the refusal, for the reason only).
_WHICH_CAP = (
    "SELECT CASE WHEN $2 <> 0 AND rewards_issued >= $2 THEN 'REFERRAL_REWARD_CAP_REACHED'"
    " ELSE 'REFERRAL_DAILY_CAP_REACHED' END FROM referral_codes WHERE user_id = $1"
)


def _reward(row: Any) -> ReferralReward:
    return ReferralReward(
        purchase_id=row["purchase_id"],
        referrer_id=row["referrer_id"],
        referee_id=row["referee_id"],
        code=row["referral_code"],
        state=RewardState(row["outcome"]),
        signal=Signal(row["signal"]) if row["signal"] else None,
        withheld_reason=row["reason"],
        reward_code=row["reward_code"],
        created_at=row["created_at"],
        release_at=row["release_at"],
        reviewed_by=row["reviewed_by"],
        reviewed_at=row["reviewed_at"],
    )


class PgReferralRewards:
    """Referral rewards over a connection or the pool (ReferralRewardsRepository)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def take_slot(
        self, referrer_id: str, cap: int, day_cap: int, day: date
    ) -> Withheld | None:
        """One of the referrer's slots under the total and the daily cap, or the cap that
        refused it."""
        if await self._conn.fetchval(_TAKE_SLOT, referrer_id, cap, day_cap, day):
            return None
        return Withheld(await self._conn.fetchval(_WHICH_CAP, referrer_id, cap))

    async def give_slot_back(self, referrer_id: str, taken_on: date) -> None:
        """A reversed, rejected, withheld or clawed-back reward frees its slot; the day's
        count only while that day is still the one counted."""
        await self._conn.execute(
            "UPDATE referral_codes SET rewards_issued = greatest(rewards_issued - 1, 0),"
            " rewards_that_day = CASE WHEN rewards_day = $2"
            "   THEN greatest(rewards_that_day - 1, 0) ELSE rewards_that_day END"
            " WHERE user_id = $1",
            referrer_id,
            taken_on,
        )

    async def record(
        self,
        referral: Referral,
        state: RewardState,
        *,
        withheld: Withheld | None = None,
        signal: Signal | None = None,
        release_at: datetime | None = None,
    ) -> None:
        """The one row per confirmed referral, ever: a second is a primary-key violation."""
        await self._conn.execute(
            "INSERT INTO referral_rewards (purchase_id, referrer_id, referee_id, outcome,"
            " reason, signal, release_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            referral.purchase_id,
            referral.referrer_id,
            referral.referee_id,
            state.value,
            withheld.value if withheld else None,
            signal.value if signal else None,
            release_at,
        )

    async def get(self, purchase_id: str, *, lock: bool = False) -> ReferralReward | None:
        lock_clause = " FOR UPDATE OF w" if lock else ""
        row = await self._conn.fetchrow(
            f"SELECT {_COLUMNS}{_FROM} WHERE w.purchase_id = $1{lock_clause}", purchase_id
        )
        return None if row is None else _reward(row)

    async def claim_due(self, now: datetime, limit: int) -> list[ReferralReward]:
        """Pending rewards whose hold has ended, locked for this transaction; rows another
        sweeper (or a refund) holds are skipped, not waited for."""
        rows = await self._conn.fetch(
            f"SELECT {_COLUMNS}{_FROM} WHERE w.outcome = 'PENDING' AND w.release_at <= $1"
            " ORDER BY w.release_at LIMIT $2 FOR UPDATE OF w SKIP LOCKED",
            now,
            limit,
        )
        return [_reward(r) for r in rows]

    async def move(
        self,
        purchase_id: str,
        before: RewardState,
        after: RewardState,
        *,
        code: str | None = None,
        withheld: Withheld | None = None,
        reviewed_by: str | None = None,
    ) -> bool:
        """`before` → `after`, only from `before`; False when the reward was elsewhere. The
        reward code is set on release and kept afterwards (clawed back or not)."""
        moved = await self._conn.fetchval(
            "UPDATE referral_rewards SET outcome = $3, code = coalesce($4, code),"
            " reason = coalesce($5, reason), reviewed_by = coalesce($6, reviewed_by),"
            " reviewed_at = CASE WHEN $6::text IS NULL THEN reviewed_at ELSE now() END,"
            " updated_at = now()"
            " WHERE purchase_id = $1 AND outcome = $2 RETURNING true",
            purchase_id,
            before.value,
            after.value,
            code,
            withheld.value if withheld else None,
            reviewed_by,
        )
        return bool(moved)

    async def refund_referral(self, purchase_id: str) -> Referral | None:
        """The completed referral of a refunded purchase, marked REFUNDED; None: none."""
        row = await self._conn.fetchrow(
            "UPDATE referrals SET status = 'REFUNDED' WHERE purchase_id = $1"
            " AND status = 'COMPLETED' RETURNING referee_id::text, referrer_id::text",
            purchase_id,
        )
        return None if row is None else Referral(purchase_id, row[0], row[1])

    async def take_back_code(self, code: str) -> bool:
        """Deactivates an unused reward code; False when it was used (a pending or completed
        purchase holds it). The code's slots are emptied first, under their row locks: a use
        that took a slot before commits first and is seen; one that comes later finds none."""
        await self._conn.execute(
            "UPDATE promo_code_slots SET uses_left = 0 WHERE code = $1 AND uses_left > 0", code
        )
        used = await self._conn.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM purchases WHERE code = $1 AND status IN {_LIVE})",
            code,
        )
        await self._conn.execute(
            "UPDATE promo_codes SET deactivated_at = coalesce(deactivated_at, now())"
            " WHERE code = $1",
            code,
        )
        return not used

    async def signal_facts(self, purchase_id: str) -> SignalFacts:
        row = await self._conn.fetchrow(
            "SELECT c.owner_address_hash, r.referee_address_hash,"
            "  EXISTS (SELECT 1 FROM referrals m WHERE m.referrer_id = r.referee_id"
            f"    AND m.referee_id = r.referrer_id AND m.status IN {_LIVE}) AS mutual"
            " FROM referrals r JOIN referral_codes c ON c.user_id = r.referrer_id"
            " WHERE r.purchase_id = $1",
            purchase_id,
        )
        return SignalFacts(
            None if row is None else row["owner_address_hash"],
            None if row is None else row["referee_address_hash"],
            row is not None and row["mutual"],
        )

    async def note_owner_address(self, user_id: str, address_hash: bytes) -> None:
        """Where the referrer was given the code (set once, when the code is made)."""
        await self._conn.execute(
            "UPDATE referral_codes SET owner_address_hash = $2"
            " WHERE user_id = $1 AND owner_address_hash IS NULL",
            user_id,
            address_hash,
        )

    async def held_page(
        self, after: tuple[datetime, str] | None, limit: int
    ) -> list[ReferralReward]:
        """Referrals held for review, oldest first (keyset paging on the held index)."""
        at, purchase_id = after if after else (None, None)
        rows = await self._conn.fetch(
            f"SELECT {_COLUMNS}{_FROM} WHERE w.outcome = 'HELD_FOR_REVIEW'"
            " AND ($1::timestamptz IS NULL OR (w.created_at, w.purchase_id) > ($1, $2::uuid))"
            " ORDER BY w.created_at, w.purchase_id LIMIT $3",
            at,
            purchase_id,
            limit,
        )
        return [_reward(r) for r in rows]

    async def totals(self) -> RewardTotals:
        """Rewards by state, and the referrals held for review now by their signal."""
        rows = await self._conn.fetch(
            "SELECT outcome, signal, count(*) AS n FROM referral_rewards GROUP BY 1, 2"
        )
        by_state: dict[str, int] = {}
        held: dict[str, int] = {}
        for row in rows:
            by_state[row["outcome"]] = by_state.get(row["outcome"], 0) + row["n"]
            if row["outcome"] == "HELD_FOR_REVIEW" and row["signal"]:
                held[row["signal"]] = held.get(row["signal"], 0) + row["n"]
        return RewardTotals(by_state, held)
