"""The Redis client of a process: a bounded pool whose callers wait for a free connection.

redis-py's default pool refuses a command outright (MaxConnectionsError) once 100 are in use;
a burst of a few hundred calls, each checking a revocation and a throttle bucket, would then
turn into UNAVAILABLE answers. Waiting a little for a connection is what a burst needs."""

from __future__ import annotations

import redis.asyncio as redis

MAX_CONNECTIONS = 100
# How long a command waits for a free connection before it fails (then: UNAVAILABLE).
WAIT_SECONDS = 5.0


def connect(url: str) -> redis.Redis:
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=WAIT_SECONDS
    )
    return redis.Redis(connection_pool=pool)
