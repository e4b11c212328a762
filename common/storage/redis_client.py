"""The Redis client of a process: a bounded pool whose callers wait for a free connection.

redis-py's default pool refuses a command outright (MaxConnectionsError) once 100 are in use;
a burst of a few hundred calls, each checking a revocation and a throttle bucket, would then
turn into UNAVAILABLE answers. Waiting a little for a connection is what a burst needs."""

from __future__ import annotations

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

MAX_CONNECTIONS = 100
# How long a command waits for a free connection before it fails (then: UNAVAILABLE).
WAIT_SECONDS = 5.0


def connect(url: str) -> redis.Redis:
    """A command is retried twice, at once, when its connection breaks: after Redis restarts,
    every pooled connection is dead and only a command finds out; the retry reconnects, so the
    first call after Redis comes back succeeds. Safe: every command the services send is
    idempotent (SET with TTL, MGET, EXISTS) or a throttle count where one extra is harmless.
    While Redis is down a call still fails within tens of milliseconds (UNAVAILABLE)."""
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=WAIT_SECONDS,
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 2),
        socket_connect_timeout=2,
        socket_timeout=5,
    )
    return redis.Redis(connection_pool=pool)
