"""The promo-code guessing throttle: failed look-ups per user and per client address.

A code that does not exist, or is not open to the caller, is what a guessing loop mostly
sees; each costs a token of the caller's buckets (per user, and per client address so that
many accounts behind one address share one budget). A person who mistypes a code a few times
never notices; a loop is answered RESOURCE_EXHAUSTED with the exact time to wait, before
the look-up, so it learns nothing more and writes no rejection row.

Each look-up takes its token before it runs (one Redis script: taken, or refused) and gets it
back when it found a usable code, so 80 concurrent guesses cannot all pass a check before the
first of them is counted: at most the limit are looked up."""

from __future__ import annotations

from dataclasses import dataclass

from common.access.throttle import Bucket, Limit, Throttle
from common.errors import too_many
from loyalty_service.domain.reasons import DOMAIN, MESSAGES, Reason

# What a guess that found nothing usable is answered with.
MISSES = frozenset({Reason.PROMO_CODE_NOT_FOUND, Reason.PROMO_CODE_NOT_FOR_USER})


@dataclass(frozen=True)
class Guesser:
    """Who is looking a code up: the signed-in user, from this client address."""

    user_id: str
    address: str


@dataclass(frozen=True)
class GuessLimits:
    per_user: Limit
    per_address: Limit


class GuessThrottle:
    def __init__(self, throttle: Throttle, limits: GuessLimits) -> None:
        self._throttle = throttle
        self._limits = limits

    def _buckets(self, guesser: Guesser) -> list[Bucket]:
        return [
            Bucket("promo:user", guesser.user_id, self._limits.per_user),
            Bucket("promo:addr", guesser.address, self._limits.per_address),
        ]

    async def check(self, guesser: Guesser) -> None:
        """Takes a guess from the caller's buckets, or refuses the look-up."""
        wait = await self._throttle.acquire(self._buckets(guesser))
        if wait > 0:
            reason = Reason.TOO_MANY_PROMO_ATTEMPTS
            raise too_many(reason.value, MESSAGES[reason], DOMAIN, wait)

    async def answered(self, guesser: Guesser, reason: Reason | None) -> None:
        """The guess taken stays spent if the look-up was a miss; a hit gets it back."""
        if reason not in MISSES:
            await self._throttle.refund(self._buckets(guesser))
