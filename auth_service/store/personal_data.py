"""SQL of personal data in auth: erasing a deleted account, a user's sessions for their
export, and the retention deletes of the worker (auth_service/jobs/retention.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from auth_service.domain.privacy import SessionRecord


def _count(done: str) -> int:
    return int(done.split()[-1])


class PgPersonalData:
    """Over one connection (inside a transaction) or the pool."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def erase(self, user_id: str, email_hash: bytes) -> None:
        """Drops the email and password hash of a DELETED account, keeping the keyed hash."""
        await self._conn.execute(
            "UPDATE users SET email = NULL, password_hash = NULL, email_hash = $2"
            " WHERE user_id = $1 AND status = 'DELETED'",
            user_id,
            email_hash,
        )

    async def sessions_of(self, user_id: str, limit: int) -> list[SessionRecord]:
        rows = await self._conn.fetch(
            "SELECT session_id::text, created_at, expires_at, revoked_at FROM sessions"
            " WHERE user_id = $1 ORDER BY created_at DESC LIMIT $2",
            user_id,
            limit,
        )
        return [SessionRecord(*r) for r in rows]

    async def forget_ended_sessions(self, cutoff: datetime) -> int:
        """Sessions that expired or were revoked before `cutoff`, with their (rotated)
        refresh tokens: a refresh token is worth keeping only while its session could be
        replayed."""
        async with self._conn.acquire() as conn, conn.transaction():
            ended = "SELECT session_id FROM sessions WHERE expires_at < $1 OR revoked_at < $1"
            await conn.execute(f"DELETE FROM refresh_tokens WHERE session_id IN ({ended})", cutoff)
            return _count(
                await conn.execute(f"DELETE FROM sessions WHERE session_id IN ({ended})", cutoff)
            )

    async def forget_erased_email_hashes(self, cutoff: datetime) -> int:
        """The keyed email hashes of accounts deleted before `cutoff`."""
        return _count(
            await self._conn.execute(
                "UPDATE users SET email_hash = NULL"
                " WHERE status = 'DELETED' AND email_hash IS NOT NULL AND updated_at < $1",
                cutoff,
            )
        )
