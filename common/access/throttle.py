"""Token buckets in Redis: how many tries a caller has left, and how long until the next one.

Each bucket holds up to `capacity` tokens and refills smoothly, `capacity` per `period`
seconds. One Lua script reads, refills and updates every bucket of a call atomically, on
Redis's clock, so replicas share the buckets and never race. The ways to use them: `acquire`
(take one from every bucket only if every bucket has one: the call is let through or refused in
one step, so concurrent calls cannot all pass a check before any of them spends), `check` (is
there a token in every bucket? takes nothing) and `spend` (take one after a failure, even into a
small debt). `check` then `spend` is two steps: N concurrent callers can all pass the check
before the first spends, so a limit that must hold under concurrency uses `acquire`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import redis.asyncio as redis

_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local mode = ARGV[1]
local states = {}
local wait = 0
for i, key in ipairs(KEYS) do
  local capacity = tonumber(ARGV[2 * i])
  local rate = tonumber(ARGV[2 * i + 1])
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(state[1]) or capacity
  local at = tonumber(state[2]) or now
  tokens = math.min(capacity, tokens + math.max(now - at, 0) * rate)
  states[i] = {tokens, capacity, rate}
  if tokens < 1 then
    wait = math.max(wait, math.ceil((1 - tokens) / rate))
  end
end
if mode == 'check' or (mode == 'acquire' and wait > 0) then
  return wait
end
for i, key in ipairs(KEYS) do
  local tokens = math.min(math.max(states[i][1] - 1, -states[i][2]), states[i][2])
  redis.call('HSET', key, 'tokens', tostring(tokens), 'at', tostring(now))
  redis.call('PEXPIRE', key, math.ceil((states[i][2] - tokens) / states[i][3]) + 1000)
end
return wait
"""


@dataclass(frozen=True)
class Limit:
    """`capacity` tries at once, refilled at `capacity` per `period` seconds."""

    capacity: int
    period: float

    @property
    def per_millisecond(self) -> float:
        return self.capacity / (self.period * 1000)


@dataclass(frozen=True)
class Bucket:
    name: str  # what is counted, e.g. "login:email"
    subject: str  # whose bucket: an email, an address, a user id (hashed before storing)
    limit: Limit


class Throttle:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._script = client.register_script(_SCRIPT)
        self._prefix = prefix

    def _key(self, bucket: Bucket) -> str:
        # Hashed, so no email or address is kept in Redis in clear text.
        digest = hashlib.sha256(bucket.subject.encode()).hexdigest()[:32]
        return f"{self._prefix}throttle:{bucket.name}:{digest}"

    async def _run(self, mode: str, buckets: list[Bucket]) -> float:
        args: list[str | float] = [mode]
        for bucket in buckets:
            args += [bucket.limit.capacity, bucket.limit.per_millisecond]
        waited = await self._script(keys=[self._key(b) for b in buckets], args=args)
        return int(waited) / 1000

    async def check(self, buckets: list[Bucket]) -> float:
        """Seconds until every bucket holds a token (0: go ahead); takes nothing."""
        return await self._run("check", buckets)

    async def spend(self, buckets: list[Bucket]) -> None:
        """Takes a token from every bucket, whatever is left."""
        await self._run("spend", buckets)

    async def acquire(self, buckets: list[Bucket]) -> float:
        """Takes a token from every bucket and returns 0, or takes none and returns the wait."""
        return await self._run("acquire", buckets)
