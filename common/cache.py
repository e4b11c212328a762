"""The Redis client every process uses."""

from __future__ import annotations

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff


def connect(url: str) -> redis.Redis:
    """A pooled client whose command is retried twice, at once, when its connection breaks.

    After Redis restarts, every pooled connection is dead, and only a command finds out: the
    retry reconnects, so the first call after Redis comes back succeeds. Retrying is safe here:
    every command the services send is idempotent (SET with TTL, MGET, EXISTS) or a counter
    where one extra count is harmless (the login limits). While Redis is down, a call still
    fails within a few tens of milliseconds (UNAVAILABLE) instead of waiting."""
    client: redis.Redis = redis.from_url(
        url,
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 2),
        socket_connect_timeout=2,
        socket_timeout=5,
    )
    return client
