"""Signing keys and the replicas' sightings of them (migrations/auth/0006_signing_keys.sql)."""

from __future__ import annotations

from typing import Any

from auth_service.keys import PUBLISHED, KeyState, StoredKey


class PgSigningKeys:
    """The keys and the replicas' sightings, over the pool."""

    def __init__(self, pool: Any) -> None:
        self._conn = pool

    async def dev_key_pem(self, candidate_pem: str) -> str:
        """The development key of the first start (kept from before keys had states)."""
        await self._conn.execute(
            "INSERT INTO dev_signing_key (id, private_pem) VALUES (1, $1)"
            " ON CONFLICT (id) DO NOTHING",
            candidate_pem,
        )
        pem: str = await self._conn.fetchval("SELECT private_pem FROM dev_signing_key WHERE id = 1")
        return pem

    async def seed(self, kid: str, pem: str) -> None:
        """Makes the key current when the table has no current key yet (first start)."""
        await self._conn.execute(
            "INSERT INTO signing_keys (kid, private_pem, state, activated_at)"
            " SELECT $1, $2, 'current', now()"
            " WHERE NOT EXISTS (SELECT 1 FROM signing_keys WHERE state = 'current')"
            " ON CONFLICT DO NOTHING",
            kid,
            pem,
        )

    async def take_over(self, kid: str, pem: str, retire_after_seconds: float) -> None:
        """A configured key the table has never held becomes current, and the current one
        previous (published until its tokens expire); a key it holds, in any state, changes
        nothing. Replicas starting together queue on a transaction lock."""
        async with self._conn.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('signing_keys'))")
            if await conn.fetchval("SELECT 1 FROM signing_keys WHERE kid = $1", kid):
                return
            await conn.execute(
                "UPDATE signing_keys SET state = 'previous',"
                " retire_at = now() + make_interval(secs => $1) WHERE state = 'current'",
                retire_after_seconds,
            )
            await conn.execute(
                "INSERT INTO signing_keys (kid, private_pem, state, activated_at)"
                " VALUES ($1, $2, 'current', now())",
                kid,
                pem,
            )

    async def published(self) -> list[StoredKey]:
        rows = await self._conn.fetch(
            "SELECT kid, private_pem, state FROM signing_keys WHERE state = ANY($1::text[])"
            " ORDER BY created_at",
            [state.value for state in PUBLISHED],
        )
        return [StoredKey(r["kid"], r["private_pem"], KeyState(r["state"])) for r in rows]

    async def add_next(self, kid: str, pem: str) -> bool:
        """False when a next key exists already (a rotation is under way) or the key is known."""
        row = await self._conn.fetchrow(
            "INSERT INTO signing_keys (kid, private_pem, state) VALUES ($1, $2, 'next')"
            " ON CONFLICT DO NOTHING RETURNING kid",
            kid,
            pem,
        )
        return row is not None

    async def next_kid(self) -> str | None:
        kid: str | None = await self._conn.fetchval(
            "SELECT kid FROM signing_keys WHERE state = 'next'"
        )
        return kid

    async def promote_next(self, retire_after_seconds: float) -> bool:
        """Next becomes current and current previous, retiring after the tokens it signed."""
        async with self._conn.acquire() as conn, conn.transaction():
            kid = await conn.fetchval(
                "SELECT kid FROM signing_keys WHERE state = 'next' FOR UPDATE"
            )
            if kid is None:
                return False
            # The old current key first: at most one current key at any moment (unique index).
            await conn.execute(
                "UPDATE signing_keys SET state = 'previous',"
                " retire_at = now() + make_interval(secs => $1) WHERE state = 'current'",
                retire_after_seconds,
            )
            await conn.execute(
                "UPDATE signing_keys SET state = 'current', activated_at = now() WHERE kid = $1",
                kid,
            )
        return True

    async def retire_due(self) -> list[str]:
        """Previous keys past their time: no longer published, their private half erased."""
        rows = await self._conn.fetch(
            "UPDATE signing_keys SET state = 'retired', private_pem = ''"
            " WHERE state = 'previous' AND retire_at <= now() RETURNING kid"
        )
        return [r["kid"] for r in rows]

    async def record_sighting(self, replica: str, kids: list[str]) -> None:
        await self._conn.execute(
            "INSERT INTO key_sightings (replica, kids, seen_at) VALUES ($1, $2, now())"
            " ON CONFLICT (replica) DO UPDATE SET kids = excluded.kids, seen_at = now()",
            replica,
            kids,
        )

    async def recent_sightings(self, within_seconds: float) -> list[list[str]]:
        """What each replica seen within the window publishes; older rows are dropped."""
        await self._conn.execute(
            "DELETE FROM key_sightings WHERE seen_at < now() - make_interval(secs => $1) * 10",
            within_seconds,
        )
        rows = await self._conn.fetch(
            "SELECT kids FROM key_sightings WHERE seen_at >= now() - make_interval(secs => $1)",
            within_seconds,
        )
        return [list(r["kids"]) for r in rows]
