"""The promo-code guessing throttle: failed look-ups per user and per client address.

A code that does not exist, or is not open to the caller, is what a guessing loop mostly
sees; each costs a token of the caller's buckets (per user, and per client address so that
many accounts behind one address share one budget). A person who mistypes a code a few times
never notices; a loop is answered RESOURCE_EXHAUSTED with the exact time to wait, before
the look-up, so it learns nothing more and writes no rejection row.

The buckets live in PostgreSQL and are read and spent inside the one statement that looks the
code up (loyalty_service/store/sql/loyalty_guess_*.sql, called by loyalty_use and loyalty_apply):
a caller short of a token is refused before the look-up; a look-up that finds a usable code
spends nothing (the successful call pays one index read, no round trip of its own); a miss
spends its token under the buckets' row locks, and one that finds them emptied by the caller's
concurrent misses is refused instead, its answer withheld and no rejection recorded. So 80
concurrent guesses get no more "not found" answers (and rows) than the budget. Here: which
buckets a caller has, and which reasons count as a guess."""

from __future__ import annotations

from dataclasses import dataclass

from common.access.throttle import Limit
from common.errors import ServiceError, too_many
from loyalty_service.domain.reasons import DOMAIN, MESSAGES, Reason

# What a guess that found nothing usable is answered with.
MISSES = frozenset({Reason.PROMO_CODE_NOT_FOUND, Reason.PROMO_CODE_NOT_FOR_USER})
_MISS_VALUES = tuple(sorted(reason.value for reason in MISSES))


@dataclass(frozen=True)
class Guesser:
    """Who is looking a code up: the signed-in user, from this client address."""

    user_id: str
    address: str


@dataclass(frozen=True)
class GuessLimits:
    per_user: Limit
    per_address: Limit


@dataclass(frozen=True)
class GuessBudget:
    """A caller's buckets, sorted (the order a spend locks them in), with their sizes and
    refill rates (tokens a millisecond), and the reasons that spend from them."""

    buckets: tuple[str, ...]
    capacities: tuple[float, ...]
    per_millisecond: tuple[float, ...]
    misses: tuple[str, ...] = _MISS_VALUES


class GuessThrottle:
    def __init__(self, limits: GuessLimits) -> None:
        self._limits = limits

    def budget(self, user_id: str, address_hash: bytes) -> GuessBudget:
        """`address_hash`: the keyed hash the caller's address is kept as (never the address:
        Referrals.address_hash, the same hash a referral keeps)."""
        kept = sorted(
            [
                (f"promo:user:{user_id}", self._limits.per_user),
                (
                    f"promo:addr:{address_hash.hex()}",
                    self._limits.per_address,
                ),
            ]
        )
        return GuessBudget(
            tuple(name for name, _ in kept),
            tuple(float(limit.capacity) for _, limit in kept),
            tuple(limit.per_millisecond for _, limit in kept),
        )


def refusal(wait_seconds: float) -> ServiceError:
    """TOO_MANY_PROMO_ATTEMPTS, with the time until the next look-up may run (whole seconds,
    at least one)."""
    reason = Reason.TOO_MANY_PROMO_ATTEMPTS
    return too_many(reason.value, MESSAGES[reason], DOMAIN, wait_seconds)
