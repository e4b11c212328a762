"""SQL of personal data in loyalty: a user's own rows for their export, and the retention of
referral address hashes. The referral tables are read by named columns, so columns added to
them later change nothing here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from loyalty_service.domain.privacy import REFEREE, MyReferral, MyReward
from loyalty_service.domain.reasons import RecordedRejection


def _count(done: str) -> int:
    return int(done.split()[-1])


class PgPersonalData:
    """Over the pool: every method is one statement, except the retention step."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def referral_code_of(self, user_id: str) -> str:
        found = await self._conn.fetchval(
            "SELECT code FROM referral_codes WHERE user_id = $1", user_id
        )
        return str(found or "")

    async def referrals_of(self, user_id: str, limit: int) -> list[MyReferral]:
        rows = await self._conn.fetch(
            "SELECT CASE WHEN referee_id = $1 THEN 'REFEREE' ELSE 'REFERRER' END AS role,"
            "       code, status, created_at, purchase_id::text AS purchase_id"
            "  FROM referrals WHERE referee_id = $1 OR referrer_id = $1"
            " ORDER BY created_at DESC LIMIT $2",
            user_id,
            limit,
        )
        return [
            MyReferral(
                r["role"],
                r["code"],
                r["status"],
                r["created_at"],
                r["purchase_id"] if r["role"] == REFEREE else "",
            )
            for r in rows
        ]

    async def rewards_of(self, user_id: str, limit: int) -> list[MyReward]:
        rows = await self._conn.fetch(
            "SELECT outcome, coalesce(code, '') AS code, created_at FROM referral_rewards"
            " WHERE referrer_id = $1 ORDER BY created_at DESC LIMIT $2",
            user_id,
            limit,
        )
        return [MyReward(r["outcome"], r["code"], r["created_at"]) for r in rows]

    async def rejections_of(self, user_id: str, limit: int) -> list[RecordedRejection]:
        rows = await self._conn.fetch(
            "SELECT rejection_id, occurred_at, code, tariff_id, reason FROM rejections"
            " WHERE user_id = $1 ORDER BY occurred_at DESC LIMIT $2",
            user_id,
            limit,
        )
        return [
            RecordedRejection(
                r["rejection_id"], r["occurred_at"], user_id, r["code"], r["tariff_id"], r["reason"]
            )
            for r in rows
        ]

    async def forget_address_hashes(self, cutoff: datetime) -> int:
        """The keyed address hashes of referrals, and of referral codes, made before `cutoff`:
        the same-address signal compares a referral with its code's owner only near the time
        it is made."""
        async with self._conn.acquire() as conn, conn.transaction():
            referrals = await conn.execute(
                "UPDATE referrals SET referee_address_hash = NULL"
                " WHERE referee_address_hash IS NOT NULL AND created_at < $1",
                cutoff,
            )
            codes = await conn.execute(
                "UPDATE referral_codes SET owner_address_hash = NULL"
                " WHERE owner_address_hash IS NOT NULL AND created_at < $1",
                cutoff,
            )
        return _count(referrals) + _count(codes)
