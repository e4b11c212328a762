"""Login attempts counted in Redis per email and per client address, in fixed windows."""

from __future__ import annotations

import hashlib

import redis.asyncio as redis

from auth_service.domain import refusal
from common.errors import ErrorKind


class LoginRateLimiter:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        per_email: int,
        per_address: int,
        window_seconds: int,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._limits = {"email": per_email, "addr": per_address}
        self._window = window_seconds

    def _key(self, kind: str, value: str) -> str:
        # Hashed so no email ends up in Redis in clear text.
        digest = hashlib.sha256(value.encode()).hexdigest()[:32]
        return f"{self._prefix}login:{kind}:{digest}"

    async def hit(self, email: str, address: str) -> None:
        """Counts one attempt; RESOURCE_EXHAUSTED once either count is past its limit."""
        keys = {"email": self._key("email", email), "addr": self._key("addr", address)}
        async with self._redis.pipeline(transaction=True) as pipe:
            for key in keys.values():
                pipe.incr(key)
                pipe.expire(key, self._window, nx=True)
            results = await pipe.execute()
        counts = dict(zip(keys, results[::2], strict=True))
        if any(counts[kind] > self._limits[kind] for kind in counts):
            raise refusal(
                ErrorKind.RESOURCE_EXHAUSTED,
                "TOO_MANY_LOGIN_ATTEMPTS",
                f"too many login attempts; try again in {self._window} seconds",
            )
