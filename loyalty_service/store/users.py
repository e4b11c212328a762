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


async def apply_user_statuses(
    conn: Any, changes: list[tuple[str, str, int]]
) -> list[tuple[str, int]]:
    """Stores a window of (user id, status, version) in one statement, each only if its
    version is newer than the one held; the (user id, version) pairs it stored. At most one
    change per user: one INSERT … ON CONFLICT cannot touch a row twice."""
    rows = await conn.fetch(
        "INSERT INTO users (user_id, status, version)"
        " SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[])"
        " ON CONFLICT (user_id) DO UPDATE"
        " SET status = EXCLUDED.status, version = EXCLUDED.version, updated_at = now()"
        " WHERE users.version < EXCLUDED.version"
        " RETURNING user_id::text, version",
        [user_id for user_id, _, _ in changes],
        [status for _, status, _ in changes],
        [version for _, _, version in changes],
    )
    return [(row["user_id"], row["version"]) for row in rows]


class PgUsers:
    """The users mirror as UsersRepository sees it."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def status_of(self, user_id: str) -> UserStatus:
        """ACTIVE for a user loyalty has not heard of yet (their token is valid)."""
        status: str | None = await self._conn.fetchval(
            "SELECT status FROM users WHERE user_id = $1", user_id
        )
        return UserStatus(status) if status else UserStatus.ACTIVE
