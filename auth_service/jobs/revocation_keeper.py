"""Keeps Redis's copy of the revoked sessions (and of deleted service accounts, revoked by
their subject) whole: rebuilds it from PostgreSQL when Redis lost it (no marker), and otherwise
re-applies the last few seconds of revocations, which covers a revocation whose write to Redis
failed after its transaction committed."""

from __future__ import annotations

import asyncio

from auth_service.store import service_accounts, sessions
from common.access.revocation import RevocationList
from common.rpc.grpc_errors import DEPENDENCY_ERRORS
from common.storage.db import Pool
from common.telemetry.logs import get_logger

log = get_logger(__name__)

# A token issued while its session was being revoked, and clocks a little apart.
TTL_MARGIN_SECONDS = 30.0


class RevocationKeeper:
    def __init__(
        self,
        pool: Pool,
        revocations: RevocationList,
        access_ttl: int,
        interval: float,
    ) -> None:
        self._pool = pool
        self._revocations = revocations
        self._lifetime = access_ttl + TTL_MARGIN_SECONDS
        self._interval = interval
        self._seen_complete = False

    async def restore_if_lost(self) -> bool:
        """Rebuilds the list when its marker is missing; True when it did."""
        if await self._revocations.is_complete():
            self._seen_complete = True
            return False
        revoked = await self._revoked_within(self._lifetime)
        await self._revocations.restore(revoked)
        # A first start on an empty Redis has nothing to restore: that is not news. A list
        # lost while this process watched it, or one that had revocations to put back, is.
        lost = self._seen_complete or bool(revoked)
        (log.warning if lost else log.info)("revocations_restored", sessions=len(revoked))
        self._seen_complete = True
        return True

    async def catch_up(self) -> None:
        recent = await self._revoked_within(self._interval * 5)
        await self._revocations.revoke_each(recent)

    async def _revoked_within(self, window: float) -> list[tuple[str, int]]:
        """Revoked sessions and deleted service accounts (revoked by their subject alike)."""
        found = await sessions.revoked_within(self._pool, window, self._lifetime)
        return found + await service_accounts.deleted_within(self._pool, window, self._lifetime)

    async def tick(self) -> None:
        if not await self.restore_if_lost():
            await self.catch_up()

    async def run(self) -> None:
        """A loop: one tick per interval; a dependency that is down is logged and waited out."""
        while True:
            try:
                await self.tick()
            except DEPENDENCY_ERRORS as error:
                log.warning("revocations_not_checked", error=repr(error))
            except Exception:
                # Whatever went wrong, the loop must go on: without it a Redis that lost its
                # data would stay without its marker, and every token would be refused.
                log.exception("revocations_check_failed")
            await asyncio.sleep(self._interval)
