"""Signing keys over time: each process reloads the ring every second and says which keys it
publishes; a rotation publishes the next key everywhere before anyone signs with it, and the
previous key stays published until the last token it signed has expired."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from auth_service.keys import KeyRing, StoredKey, every_replica_publishes, ring_of, signing_key
from common.rpc.grpc_errors import DEPENDENCY_ERRORS
from common.telemetry.logs import get_logger

log = get_logger(__name__)

# Clocks a little apart, and a token issued just before the switch.
RETIRE_MARGIN_SECONDS = 30.0


class SigningKeyStore(Protocol):
    async def seed(self, kid: str, pem: str) -> None: ...

    async def take_over(self, kid: str, pem: str, retire_after_seconds: float) -> None: ...

    async def published(self) -> list[StoredKey]: ...

    async def add_next(self, kid: str, pem: str) -> bool: ...

    async def next_kid(self) -> str | None: ...

    async def promote_next(self, retire_after_seconds: float) -> bool: ...

    async def retire_due(self) -> list[str]: ...

    async def record_sighting(self, replica: str, kids: list[str]) -> None: ...

    async def recent_sightings(self, within_seconds: float) -> list[list[str]]: ...


class RotationTimedOut(Exception):
    """Some replica seen lately did not publish the next key in time."""


class SigningKeys:
    def __init__(
        self,
        store: SigningKeyStore,
        replica: str,
        access_ttl: int,
        refresh_seconds: float,
        on_change: Callable[[KeyRing], None] = lambda ring: None,
    ) -> None:
        self._store = store
        self._replica = replica
        self._access_ttl = access_ttl
        self._refresh_seconds = refresh_seconds
        self._on_change = on_change

    @property
    def sighting_window(self) -> float:
        """A replica not seen for this long is gone (a live one reports every refresh)."""
        return max(5.0, self._refresh_seconds * 5)

    async def start(self, seed_pem: str, configured: bool = False) -> KeyRing:
        """The first start seeds the table with `seed_pem`; later starts read what is there,
        except that a configured key the table never held takes over (the old key stays
        published as previous): setting AUTH_JWT_PRIVATE_KEY and restarting still rotates."""
        seed = signing_key(seed_pem)
        if configured:
            retire = self._access_ttl + RETIRE_MARGIN_SECONDS
            await self._store.take_over(seed.kid, seed_pem, retire)
        else:
            await self._store.seed(seed.kid, seed_pem)
        return await self.refresh()

    async def refresh(self) -> KeyRing:
        await self._store.retire_due()
        ring = ring_of(await self._store.published())
        self._on_change(ring)
        await self._store.record_sighting(self._replica, ring.kids)
        return ring

    async def run(self) -> None:
        """The loop of a serving process; a database that is down is waited out with the keys
        loaded last (they stay valid: a rotation waits for this process to report)."""
        while True:
            await asyncio.sleep(self._refresh_seconds)
            try:
                await self.refresh()
            except DEPENDENCY_ERRORS as error:
                log.warning("signing_keys_not_refreshed", error=repr(error))

    async def rotate(self, pem: str, wait_seconds: float, verifier_refresh: float) -> str:
        """Adds `pem` as the next key (or resumes a rotation left half done), waits until
        every replica publishes it and verifiers may have refetched the JWKS, then makes it
        current. Returns its kid."""
        kid = signing_key(pem).kid
        if not await self._store.add_next(kid, pem):
            kid = await self._store.next_kid() or kid
        await self._wait_published(kid, wait_seconds)
        # A verifier that fetched the JWKS just before the next key appeared refetches only
        # after its minimum interval: the switch waits that out.
        await asyncio.sleep(verifier_refresh)
        await self._store.promote_next(self._access_ttl + RETIRE_MARGIN_SECONDS)
        return kid

    async def _wait_published(self, kid: str, wait_seconds: float) -> None:
        deadline = time.monotonic() + wait_seconds
        while not every_replica_publishes(
            kid, await self._store.recent_sightings(self.sighting_window)
        ):
            if time.monotonic() > deadline:
                raise RotationTimedOut(f"not every auth replica publishes key {kid} yet")
            await asyncio.sleep(self._refresh_seconds / 2)
