"""The users mirror: the newest (status, version) auth has reported for each user."""

from __future__ import annotations

from typing import Any

from common.user_status import UserStatus


async def apply_user_status(conn: Any, user_id: str, status: UserStatus, version: int) -> bool:
    """Stores the status only if `version` is newer than the one held; whether it did."""
    applied = await conn.fetchval(
        "INSERT INTO users (user_id, status, version) VALUES ($1, $2, $3)"
        " ON CONFLICT (user_id) DO UPDATE"
        " SET status = EXCLUDED.status, version = EXCLUDED.version, updated_at = now()"
        " WHERE users.version < EXCLUDED.version"
        " RETURNING true",
        user_id,
        status.value,
        version,
    )
    return bool(applied)


async def status_of(conn: Any, user_id: str) -> UserStatus:
    """ACTIVE for a user loyalty has not heard of yet (their token is valid)."""
    status: str | None = await conn.fetchval("SELECT status FROM users WHERE user_id = $1", user_id)
    return UserStatus(status) if status else UserStatus.ACTIVE
