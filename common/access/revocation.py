"""Revoked sessions in Redis, each kept for the longest remaining access-token lifetime.

Auth writes them (logout, refresh reuse, blocking, deletion); every verifier reads them.
PostgreSQL is the source of truth (`sessions.revoked_at`); Redis holds a copy that a restart
may wipe. A marker key says the copy is complete: auth writes it in the same MULTI/EXEC as the
revocations it rebuilds from PostgreSQL, so a Redis that lost its data has no marker, and a
verifier that finds none refuses (UNAVAILABLE, retryable) rather than accept a token it cannot
judge."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import redis.asyncio as redis


class RevocationsUnknown(Exception):
    """Redis has no complete copy of the revocations (it lost its data); auth rebuilds it."""


class RevocationList:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._redis = client
        self.prefix = prefix
        self.marker_key = f"{prefix}revoked:complete"
        # Told of every revocation this process writes, before the write
        # (common.access.revocation_watch).
        self._listeners: list[Callable[[list[str], float], None]] = []

    def on_revoke(self, listener: Callable[[list[str], float], None]) -> None:
        self._listeners.append(listener)

    def _key(self, session_id: str) -> str:
        return f"{self.prefix}revoked:sid:{session_id}"

    async def revoke(self, session_ids: Iterable[str], ttl_seconds: int) -> None:
        await self._write(((s, ttl_seconds) for s in session_ids), complete=False)

    async def revoke_each(self, revoked: Iterable[tuple[str, int]]) -> None:
        """Writes each (session, seconds left)."""
        await self._write(revoked, complete=False)

    async def restore(self, revoked: Iterable[tuple[str, int]]) -> None:
        """Writes every (session, seconds left) and the marker, all or nothing."""
        await self._write(revoked, complete=True)

    async def _write(self, revoked: Iterable[tuple[str, int]], complete: bool) -> None:
        revoked = list(revoked)
        for listener in self._listeners:
            for session_id, ttl in revoked:
                listener([session_id], max(ttl, 1))
        async with self._redis.pipeline(transaction=complete) as pipe:
            for session_id, ttl in revoked:
                pipe.set(self._key(session_id), "1", ex=max(ttl, 1))
            if complete:
                pipe.set(self.marker_key, "1")
            if len(pipe):
                await pipe.execute()

    async def is_complete(self) -> bool:
        return bool(await self._redis.exists(self.marker_key))

    async def is_revoked(self, session_id: str) -> bool:
        """One round trip: the marker and the session's key in a single MGET."""
        marker, revoked = await self._redis.mget(self.marker_key, self._key(session_id))
        if marker is None:
            raise RevocationsUnknown
        return revoked is not None
