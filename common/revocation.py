"""Revoked sessions in Redis, kept for the longest remaining access-token lifetime.

Auth writes them (logout, refresh reuse, blocking, deletion); every verifier reads them."""

from __future__ import annotations

from collections.abc import Iterable

import redis.asyncio as redis


class RevocationList:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix

    def _key(self, session_id: str) -> str:
        return f"{self._prefix}revoked:sid:{session_id}"

    async def revoke(self, session_ids: Iterable[str], ttl_seconds: int) -> None:
        keys = [self._key(s) for s in session_ids]
        if not keys:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(key, "1", ex=max(ttl_seconds, 1))
            await pipe.execute()

    async def is_revoked(self, session_id: str) -> bool:
        return bool(await self._redis.exists(self._key(session_id)))
