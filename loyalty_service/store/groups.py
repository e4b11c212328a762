"""Groups of users, the audience unit of promo codes."""

from __future__ import annotations

from typing import Any

import asyncpg

from loyalty_service.domain.groups import Group, GroupNameTaken

_WITH_COUNT = (
    "SELECT g.group_id, g.name, g.created_at,"
    " (SELECT count(*) FROM group_members m WHERE m.group_id = g.group_id) AS member_count"
    " FROM groups g"
)


def to_group(row: asyncpg.Record) -> Group:
    return Group(str(row["group_id"]), row["name"], row["member_count"], row["created_at"])


class PgGroups:
    """Groups over a connection or the pool (GroupsRepository)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def create(self, group_id: str, name: str) -> Group:
        try:
            await self._conn.execute(
                "INSERT INTO groups (group_id, name) VALUES ($1, $2)", group_id, name
            )
        except asyncpg.UniqueViolationError:
            raise GroupNameTaken(name) from None
        created = await self.get(group_id)
        assert created is not None
        return created

    async def get(self, group_id: str) -> Group | None:
        row = await self._conn.fetchrow(f"{_WITH_COUNT} WHERE g.group_id = $1", group_id)
        return None if row is None else to_group(row)

    async def page(self, after_name: str | None, limit: int) -> list[Group]:
        rows = await self._conn.fetch(
            f"{_WITH_COUNT} WHERE $1::text IS NULL OR lower(g.name) > $1"
            " ORDER BY lower(g.name) LIMIT $2",
            after_name,
            limit,
        )
        return [to_group(r) for r in rows]

    async def add_members(self, group_id: str, user_ids: list[str]) -> None:
        await self._conn.execute(
            "INSERT INTO group_members (group_id, user_id)"
            " SELECT $1, u FROM unnest($2::uuid[]) u ON CONFLICT DO NOTHING",
            group_id,
            user_ids,
        )

    async def remove_members(self, group_id: str, user_ids: list[str]) -> None:
        await self._conn.execute(
            "DELETE FROM group_members WHERE group_id = $1 AND user_id = ANY($2::uuid[])",
            group_id,
            user_ids,
        )

    async def members_page(self, group_id: str, after: str | None, limit: int) -> list[str]:
        rows = await self._conn.fetch(
            "SELECT user_id FROM group_members WHERE group_id = $1"
            " AND ($2::uuid IS NULL OR user_id > $2) ORDER BY user_id LIMIT $3",
            group_id,
            after,
            limit,
        )
        return [str(r["user_id"]) for r in rows]

    async def members_of(self, group_ids: list[str]) -> list[str]:
        rows = await self._conn.fetch(
            "SELECT DISTINCT user_id FROM group_members WHERE group_id = ANY($1::uuid[])", group_ids
        )
        return [str(r["user_id"]) for r in rows]

    async def missing_ids(self, group_ids: list[str]) -> list[str]:
        rows = await self._conn.fetch(
            "SELECT g FROM unnest($1::uuid[]) g WHERE g NOT IN (SELECT group_id FROM groups)",
            group_ids,
        )
        return [str(r["g"]) for r in rows]
