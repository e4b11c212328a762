"""Users: registration, lookup, status and role changes, listing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from auth_service.domain import EmailTaken, Role, Status, User

_COLUMNS = "user_id, email, status, role, version, password_hash, created_at, updated_at"


def to_user(row: asyncpg.Record) -> User:
    return User(
        user_id=str(row["user_id"]),
        email=row["email"] or "",  # NULL once a deleted account was erased
        status=Status(row["status"]),
        role=Role(row["role"]),
        version=row["version"],
        password_hash=row["password_hash"] or "",
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _maybe(row: asyncpg.Record | None) -> User | None:
    return None if row is None else to_user(row)


class PgUsers:
    """Users over a connection or the pool (UserRepository)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def insert(self, user_id: str, email: str, password_hash: str) -> User:
        try:
            return to_user(
                await self._conn.fetchrow(
                    f"INSERT INTO users (user_id, email, password_hash) VALUES ($1, $2, $3)"
                    f" RETURNING {_COLUMNS}",
                    user_id,
                    email,
                    password_hash,
                )
            )
        except asyncpg.UniqueViolationError:
            raise EmailTaken(email) from None

    async def by_email(self, email: str) -> User | None:
        return _maybe(
            await self._conn.fetchrow(
                f"SELECT {_COLUMNS} FROM users WHERE lower(email) = lower($1)", email
            )
        )

    async def by_id(self, user_id: str, *, lock: bool = False) -> User | None:
        suffix = " FOR UPDATE" if lock else ""
        return _maybe(
            await self._conn.fetchrow(
                f"SELECT {_COLUMNS} FROM users WHERE user_id = $1{suffix}", user_id
            )
        )

    async def set_status(self, user_id: str, status: Status) -> User:
        row = await self._conn.fetchrow(
            "UPDATE users SET status = $2, version = version + 1, updated_at = now()"
            f" WHERE user_id = $1 RETURNING {_COLUMNS}",
            user_id,
            status.value,
        )
        return to_user(row)

    async def set_role(self, user_id: str, role: Role) -> None:
        await self._conn.execute(
            "UPDATE users SET role = $2, updated_at = now() WHERE user_id = $1", user_id, role.value
        )

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        await self._conn.execute(
            "UPDATE users SET password_hash = $2 WHERE user_id = $1", user_id, password_hash
        )

    async def page(
        self, after: tuple[datetime, str] | None, limit: int, email_prefix: str = ""
    ) -> list[User]:
        """By creation, then id; with `email_prefix`, only the emails starting with it
        (case-insensitive, LIKE's wildcards taken literally)."""
        where: list[str] = []
        args: list[Any] = []
        if after is not None:
            args += [after[0], after[1]]
            where.append("(created_at, user_id) > ($1, $2)")
        if email_prefix:
            args.append(_like_prefix(email_prefix))
            where.append(f"lower(email) LIKE ${len(args)} ESCAPE '\\'")
        args.append(limit)
        condition = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self._conn.fetch(
            f"SELECT {_COLUMNS} FROM users{condition}"
            f" ORDER BY created_at, user_id LIMIT ${len(args)}",
            *args,
        )
        return [to_user(r) for r in rows]

    async def emails(self, user_ids: list[str]) -> dict[str, str]:
        """Each known id's email ("" for a deleted account, whose email is erased)."""
        rows = await self._conn.fetch(
            "SELECT user_id, email, status FROM users WHERE user_id = ANY($1::uuid[])", user_ids
        )
        return {
            str(r["user_id"]): "" if r["status"] == Status.DELETED.value else (r["email"] or "")
            for r in rows
        }


def _like_prefix(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"
