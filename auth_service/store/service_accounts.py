"""Service accounts and their client secrets (stored as SHA-256 hashes). Each method is one
statement or one transaction of its own, so the repository needs only the pool."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from auth_service.domain.service_accounts import ServiceAccount, subject_of

_COLUMNS = "account_id, name, scopes, created_at"
_LIVE_SECRET = "(s.expires_at IS NULL OR s.expires_at > now())"


def to_account(row: asyncpg.Record) -> ServiceAccount:
    return ServiceAccount(
        str(row["account_id"]), row["name"], tuple(row["scopes"]), row["created_at"]
    )


class PgServiceAccounts:
    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def create(
        self, account_id: str, name: str, scopes: tuple[str, ...], secret_hash: str
    ) -> ServiceAccount:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"INSERT INTO service_accounts (account_id, name, scopes) VALUES ($1, $2, $3)"
                f" RETURNING {_COLUMNS}",
                account_id,
                name,
                list(scopes),
            )
            await _add_secret(conn, account_id, secret_hash)
        return to_account(row)

    async def page(self, after: tuple[datetime, str] | None, limit: int) -> list[ServiceAccount]:
        """Live accounts by creation, then id, after the (created_at, id) position."""
        live = f"SELECT {_COLUMNS} FROM service_accounts WHERE deleted_at IS NULL"
        order = " ORDER BY created_at, account_id"
        if after is None:
            rows = await self._pool.fetch(f"{live}{order} LIMIT $1", limit)
        else:
            rows = await self._pool.fetch(
                f"{live} AND (created_at, account_id) > ($1, $2){order} LIMIT $3",
                after[0],
                after[1],
                limit,
            )
        return [to_account(r) for r in rows]

    async def rotate(self, account_id: str, secret_hash: str, overlap: float) -> bool:
        """Gives the live secrets at most `overlap` seconds more and adds the new one; False
        when there is no live account. The row lock orders concurrent rotations."""
        async with self._pool.acquire() as conn, conn.transaction():
            found = await conn.fetchval(
                "SELECT 1 FROM service_accounts WHERE account_id = $1 AND deleted_at IS NULL"
                " FOR UPDATE",
                account_id,
            )
            if found is None:
                return False
            await conn.execute(
                "UPDATE service_account_secrets s SET expires_at = LEAST("
                "  coalesce(s.expires_at, 'infinity'), now() + make_interval(secs => $2))"
                f" WHERE s.account_id = $1 AND {_LIVE_SECRET}",
                account_id,
                float(overlap),
            )
            await _add_secret(conn, account_id, secret_hash)
        return True

    async def delete(self, account_id: str) -> bool:
        """False when there was no live account."""
        deleted = await self._pool.fetchval(
            "UPDATE service_accounts SET deleted_at = now()"
            " WHERE account_id = $1 AND deleted_at IS NULL RETURNING account_id",
            account_id,
        )
        return deleted is not None

    async def by_secret(self, account_id: str, secret_hash: str) -> ServiceAccount | None:
        """The live account when the secret is one of its live secrets."""
        row = await self._pool.fetchrow(
            "SELECT a.account_id, a.name, a.scopes, a.created_at"
            " FROM service_account_secrets s JOIN service_accounts a USING (account_id)"
            " WHERE s.secret_hash = $2 AND a.account_id = $1 AND a.deleted_at IS NULL"
            f"   AND {_LIVE_SECRET}",
            account_id,
            secret_hash,
        )
        return None if row is None else to_account(row)


async def _add_secret(conn: Any, account_id: str, secret_hash: str) -> None:
    await conn.execute(
        "INSERT INTO service_account_secrets (secret_hash, account_id) VALUES ($1, $2)",
        secret_hash,
        account_id,
    )


async def deleted_within(conn: Any, window: float, lifetime: float) -> list[tuple[str, int]]:
    """Accounts deleted in the last `window` seconds, as revoked session ids (their subject)
    with the seconds left until `lifetime` after the deletion."""
    rows = await conn.fetch(
        "SELECT account_id::text,"
        " ceil(extract(epoch FROM deleted_at - now()) + $2)::int AS ttl"
        " FROM service_accounts WHERE deleted_at > now() - make_interval(secs => $1)",
        float(window),
        float(lifetime),
    )
    return [(subject_of(r["account_id"]), r["ttl"]) for r in rows]
