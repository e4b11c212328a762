"""Sessions and their rotating refresh tokens (stored as hashes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from auth_service.domain import RefreshUse


async def revoked_within(conn: Any, window: float, lifetime: float) -> list[tuple[str, int]]:
    """Sessions revoked in the last `window` seconds, each with the seconds left until
    `lifetime` after its revocation (how long its access tokens may still be presented)."""
    rows = await conn.fetch(
        "SELECT session_id::text,"
        " ceil(extract(epoch FROM revoked_at - now()) + $2)::int AS ttl"
        " FROM sessions WHERE revoked_at > now() - make_interval(secs => $1)",
        float(window),
        float(lifetime),
    )
    return [(r["session_id"], r["ttl"]) for r in rows]


class PgSessions:
    """Sessions over a connection or the pool (SessionRepository)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def create(
        self, session_id: str, user_id: str, expires_at: datetime, token_hash: str
    ) -> None:
        await self._conn.execute(
            "INSERT INTO sessions (session_id, user_id, expires_at) VALUES ($1, $2, $3)",
            session_id,
            user_id,
            expires_at,
        )
        await self.add_refresh_token(session_id, token_hash)

    async def add_refresh_token(self, session_id: str, token_hash: str) -> None:
        await self._conn.execute(
            "INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($1, $2)",
            token_hash,
            session_id,
        )

    async def use_refresh_token(self, token_hash: str) -> RefreshUse:
        """Marks the token used, once: a second presentation of it is a reuse."""
        row = await self._conn.fetchrow(
            "UPDATE refresh_tokens t SET used_at = now() FROM sessions s"
            " WHERE t.token_hash = $1 AND t.used_at IS NULL AND s.session_id = t.session_id"
            "   AND s.revoked_at IS NULL AND s.expires_at > now()"
            " RETURNING s.session_id, s.user_id",
            token_hash,
        )
        if row is not None:
            return RefreshUse(str(row["session_id"]), str(row["user_id"]), reused=False)
        used = await self._conn.fetchrow(
            "SELECT t.session_id, s.user_id FROM refresh_tokens t"
            " JOIN sessions s USING (session_id) WHERE t.token_hash = $1 AND t.used_at IS NOT NULL",
            token_hash,
        )
        if used is None:
            return RefreshUse(None, None, reused=False)
        return RefreshUse(str(used["session_id"]), str(used["user_id"]), reused=True)

    async def session_of_token(self, token_hash: str) -> str | None:
        value = await self._conn.fetchval(
            "SELECT session_id FROM refresh_tokens WHERE token_hash = $1", token_hash
        )
        return str(value) if value else None

    async def revoke(self, session_id: str) -> None:
        await self._conn.execute(
            "UPDATE sessions SET revoked_at = now() WHERE session_id = $1 AND revoked_at IS NULL",
            session_id,
        )

    async def revoke_all_of_user(self, user_id: str) -> list[str]:
        rows = await self._conn.fetch(
            "UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL"
            " RETURNING session_id",
            user_id,
        )
        return [str(r["session_id"]) for r in rows]
