"""A local copy of the revoked sessions in each verifying process, so that checking a token
costs no Redis round trip, kept current by Redis itself (client-side caching's tracking).

The watch opens one connection of its own, turns on `CLIENT TRACKING … BCAST PREFIX
<prefix>revoked:` redirected to itself, and subscribes to `__redis__:invalidate`: from then on
Redis tells it, within the same event-loop turn as the write, the name of every key under that
prefix that changes (a revocation written by any auth replica or by its keeper, the marker
deleted, a key expired) and that the whole database was flushed. No writer has to publish
anything, so no write path can forget to.

The copy is trusted ("live") only while all of this holds: the subscription is confirmed, the
marker (`revoked:complete`) was present when the copy was loaded, and nothing since said it
went away. Otherwise — before the first load, after the connection dropped or was killed, after
the marker was deleted or the database flushed — `knows()` answers None and the verifier asks
Redis as before (which refuses with UNAVAILABLE while the marker is missing). A session once
seen revoked stays revoked in the copy until its key's own expiry (the token's remaining
lifetime), so the copy never forgets a revocation sooner than Redis does.

Propagation: a revocation reaches the copy one Redis-to-process hop after its write (well
under a millisecond on loopback); a call that raced with that hop is the only one the copy can
still accept, the same window a process that read Redis just before the write had."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence

import redis.asyncio as redis
from redis.exceptions import RedisError

from common.access.revocation import RevocationList
from common.telemetry.logs import get_logger

log = get_logger(__name__)

INVALIDATE_CHANNEL = "__redis__:invalidate"
# A session whose key's lifetime is unknown (no TTL read yet) is kept this long.
UNKNOWN_TTL_SECONDS = 24 * 3600.0
PING_EVERY_SECONDS = 1.0
SILENT_AFTER_SECONDS = 3.0  # no answer to pings for this long: the connection is dead
RETRY_SECONDS = 0.5


class RevocationWatch:
    def __init__(self, url: str, revocations: RevocationList) -> None:
        self._url = url
        self._revocations = revocations
        self._prefix = f"{revocations.prefix}revoked:"
        self._sid_prefix = f"{self._prefix}sid:"
        self._revoked: dict[str, float] = {}  # session id -> when its key expires (monotonic)
        self._live = False
        self._stale = True  # the copy must be (re)loaded before it can be live
        self.client_id: int | None = None  # of the watch's own connection (tests kill it)

    @property
    def live(self) -> bool:
        return self._live

    def knows(self, session_id: str) -> bool | None:
        """Whether the session is revoked, when the copy can say; None: ask Redis."""
        if not self._live:
            return None
        expires = self._revoked.get(session_id)
        return expires is not None and expires > time.monotonic()

    def remember(self, session_ids: Iterable[str], ttl_seconds: float) -> None:
        """Revocations this process wrote itself: in the copy before the write returns."""
        expires = time.monotonic() + ttl_seconds
        for session_id in session_ids:
            self._revoked[session_id] = max(self._revoked.get(session_id, 0.0), expires)

    async def run(self) -> None:
        """Follows Redis until cancelled; every failure makes the copy untrusted until a new
        connection has reloaded it."""
        while True:
            try:
                await self._follow()
            except (RedisError, OSError) as error:
                log.warning("revocation_watch_lost", error=repr(error))
            finally:
                self._untrust()
            await asyncio.sleep(RETRY_SECONDS)

    def _untrust(self) -> None:
        self._live = False
        self._stale = True

    async def _follow(self) -> None:
        client = redis.Redis.from_url(self._url, protocol=2, socket_connect_timeout=2)
        pubsub = client.pubsub()
        try:
            await self._subscribe(pubsub)
            await self._listen(client, pubsub)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            await client.aclose()

    async def _command(self, pubsub: redis.client.PubSub, *args: str | int) -> object:
        await pubsub.execute_command(*args)
        return await pubsub.parse_response(block=False, timeout=2)

    async def _subscribe(self, pubsub: redis.client.PubSub) -> None:
        client_id = await self._command(pubsub, "CLIENT", "ID")
        assert isinstance(client_id, int)
        await self._command(pubsub, "CLIENT", "SETNAME", "revocation-watch")
        await self._command(
            pubsub, "CLIENT", "TRACKING", "on", "REDIRECT", client_id, "BCAST", "PREFIX",
            self._prefix,
        )  # fmt: skip
        await pubsub.subscribe(INVALIDATE_CHANNEL)
        confirmed = await pubsub.get_message(timeout=2)
        if not confirmed or confirmed.get("type") != "subscribe":
            raise RedisError(f"no subscription confirmed: {confirmed!r}")
        self.client_id = client_id

    async def _listen(self, client: redis.Redis, pubsub: redis.client.PubSub) -> None:
        heard = time.monotonic()
        pinged = heard
        while True:
            if self._stale:
                await self._load(client, pubsub)
            message = await pubsub.get_message(timeout=PING_EVERY_SECONDS)
            now = time.monotonic()
            if message is not None:
                heard = now
                await self._apply(client, message)
            if now - heard > SILENT_AFTER_SECONDS:
                raise RedisError("the revocation watch's connection went silent")
            if now - pinged >= PING_EVERY_SECONDS:
                await pubsub.ping()
                pinged = now

    async def _load(self, client: redis.Redis, pubsub: redis.client.PubSub) -> None:
        """Reads the whole list once the subscription is live (so nothing written during the
        read is missed), and trusts it only when the marker says it is complete."""
        self._live = False
        if not await client.exists(self._revocations.marker_key):
            return  # still stale: the next message or ping turn tries again
        keys = [key async for key in client.scan_iter(match=f"{self._sid_prefix}*", count=1000)]
        await self._record(client, keys)
        while (message := await pubsub.get_message(timeout=0)) is not None:
            await self._apply(client, message)  # written while the list was read
        if self._stale and await client.exists(self._revocations.marker_key):
            self._stale = False
            self._live = True
            log.info("revocation_watch_live", sessions=len(self._revoked))

    async def _apply(self, client: redis.Redis, message: dict[str, object]) -> None:
        if message.get("type") != "message":
            return  # pong, or the subscription's own confirmation
        keys = message.get("data")
        if keys is None:  # FLUSHDB / FLUSHALL: the marker went with everything else
            self._untrust()
            return
        assert isinstance(keys, list)
        names = [_text(key) for key in keys]
        if self._revocations.marker_key in names:
            self._untrust()
            self._stale = True
        # Seen revoked before the TTL is read: a key that changed is a revocation until Redis
        # says otherwise (an expired key's session has no live token left either way).
        sessions = [
            n.removeprefix(self._sid_prefix) for n in names if n.startswith(self._sid_prefix)
        ]
        self.remember(sessions, UNKNOWN_TTL_SECONDS)
        await self._record(client, [self._sid_prefix + s for s in sessions])

    async def _record(self, client: redis.Redis, keys: Sequence[bytes | str]) -> None:
        """Each key's session with the key's own expiry; a key already gone is forgotten."""
        if not keys:
            return
        async with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.pttl(key)
            lifetimes = await pipe.execute()
        now = time.monotonic()
        for name, pttl in zip(keys, lifetimes, strict=True):
            session_id = _text(name).removeprefix(self._sid_prefix)
            if pttl == -2:
                self._revoked.pop(session_id, None)
            else:
                self._revoked[session_id] = now + (pttl / 1000 if pttl > 0 else UNKNOWN_TTL_SECONDS)


def _text(key: object) -> str:
    return key.decode() if isinstance(key, bytes) else str(key)
