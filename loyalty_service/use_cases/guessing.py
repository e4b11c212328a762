"""The promo-code guessing throttle: failed look-ups per user and per client address.

A code that does not exist, or is not open to the caller, is what a guessing loop mostly
sees; each costs a token of the caller's buckets (per user, and per client address so that
many accounts behind one address share one budget). A person who mistypes a code a few times
never notices; a loop is answered RESOURCE_EXHAUSTED with the exact time to wait, before
the look-up, so it learns nothing more and writes no rejection row.

Each look-up takes its token before it runs (one Redis script: taken, or refused) and gets it
back when it found a usable code, so 80 concurrent guesses cannot all pass a check before the
first of them is counted: at most the limit are looked up.

Most look-ups are hits, and two Redis round trips each (take, give back) were most of a
successful use's cost. So each worker remembers what Redis last said a bucket holds, for a
couple of seconds, and lets a look-up take its token from that local count instead: no Redis
at all for a hit. A miss is still spent in Redis (and its answer refreshes the count), and a
look-up the local count cannot cover goes to Redis as before. Within a worker the limit holds
exactly (local tokens are reserved before the look-up, as Redis's are). Each worker has its
own count, so a burst timed across W workers within the count's lifetime can look up to W
times a fresh bucket's tokens once; a sustained loop is held to the limit, since every miss
is spent in Redis and every worker learns the count from it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from common.access.throttle import Answer, Bucket, Limit, Throttle
from common.errors import too_many
from loyalty_service.domain.reasons import DOMAIN, MESSAGES, Reason

# What a guess that found nothing usable is answered with.
MISSES = frozenset({Reason.PROMO_CODE_NOT_FOUND, Reason.PROMO_CODE_NOT_FOR_USER})
# How long a worker trusts what Redis last said a bucket holds.
KNOWN_FOR_SECONDS = 2.0
# Buckets a worker remembers at most (the oldest are forgotten first).
KNOWN_BUCKETS = 20_000


@dataclass(frozen=True)
class Guesser:
    """Who is looking a code up: the signed-in user, from this client address."""

    user_id: str
    address: str


@dataclass(frozen=True)
class GuessLimits:
    per_user: Limit
    per_address: Limit


@dataclass(slots=True)
class _Known:
    """One bucket as this worker knows it."""

    tokens: int = 0  # what Redis said the bucket held after its last step here
    until: float = 0.0  # monotonic time after which Redis is asked again
    reserved: int = 0  # tokens look-ups in flight here took from `tokens`
    asking: int = 0  # look-ups in flight here that took their token in Redis

    def free(self, now: float) -> int:
        """Tokens a look-up may take here without Redis: none while a look-up is asking
        Redis (its answer is not counted yet), none once the count is old."""
        if self.asking or now >= self.until:
            return 0
        return self.tokens - self.reserved


@dataclass(frozen=True)
class Guess:
    """A look-up let through, and where its token came from (this worker's count, or Redis)."""

    guesser: Guesser
    local: bool
    # The caller's buckets and this worker's entries for them, found once per look-up.
    buckets: list[Bucket] = field(default_factory=list)
    entries: list[_Known] = field(default_factory=list)


class GuessThrottle:
    def __init__(self, throttle: Throttle, limits: GuessLimits) -> None:
        self._throttle = throttle
        self._limits = limits
        self._known: dict[str, _Known] = {}

    def _buckets(self, guesser: Guesser) -> list[Bucket]:
        return [
            Bucket("promo:user", guesser.user_id, self._limits.per_user),
            Bucket("promo:addr", guesser.address, self._limits.per_address),
        ]

    def _entries(self, buckets: list[Bucket]) -> list[_Known]:
        entries = []
        for bucket in buckets:
            key = self._throttle.key(bucket)
            known = self._known.get(key)
            if known is None:
                if len(self._known) >= KNOWN_BUCKETS:
                    self._forget_one()
                known = self._known[key] = _Known()
            entries.append(known)
        return entries

    def _forget_one(self) -> None:
        """The oldest bucket nothing here is using (a full table of busy buckets keeps all)."""
        for key, known in self._known.items():
            if not known.reserved and not known.asking:
                del self._known[key]
                return

    @staticmethod
    def _learn(entries: list[_Known], answer: Answer) -> None:
        """What Redis said. Answers may arrive out of order (one per pooled connection), so
        within a count's lifetime only a lower count is believed; a fresh count comes after
        it expires, from the next step in Redis."""
        now = time.monotonic()
        for known, tokens in zip(entries, answer.left, strict=True):
            if now < known.until:
                known.tokens = min(known.tokens, tokens)
            else:
                known.tokens, known.until = tokens, now + KNOWN_FOR_SECONDS

    @staticmethod
    def _wait(buckets: list[Bucket], short: list[bool]) -> float:
        """The time one token takes to come back, in the slowest bucket that is short."""
        periods = [b.limit.period / b.limit.capacity for b, s in zip(buckets, short, strict=True)]
        return max((p for p, s in zip(periods, short, strict=True) if s), default=0.0)

    async def check(self, guesser: Guesser) -> Guess:
        """Takes a guess from the caller's buckets (this worker's count, else Redis's), or
        refuses the look-up."""
        buckets = self._buckets(guesser)
        entries = self._entries(buckets)
        now = time.monotonic()
        if all(known.free(now) >= 1 for known in entries):
            for known in entries:
                known.reserved += 1
            return Guess(guesser, True, buckets, entries)
        wait = await self._acquire(buckets, entries)
        if wait > 0:
            reason = Reason.TOO_MANY_PROMO_ATTEMPTS
            raise too_many(reason.value, MESSAGES[reason], DOMAIN, wait)
        return Guess(guesser, False, buckets, entries)

    async def _acquire(self, buckets: list[Bucket], entries: list[_Known]) -> float:
        """A token from Redis, covering also the tokens held here when it was asked (Redis
        cannot see them; while it is asked, no more are taken here)."""
        held = [known.reserved for known in entries]
        for known in entries:
            known.asking += 1
        try:
            answer = await self._throttle.run("acquire", buckets)
        finally:
            for known in entries:
                known.asking -= 1
        self._learn(entries, answer)
        if answer.wait > 0:
            return answer.wait
        wait = self._wait(buckets, [left < h for left, h in zip(answer.left, held, strict=True)])
        if wait > 0:
            await self._throttle.run("refund", buckets)
        return wait

    def unanswered(self, guess: Guess) -> None:
        """The look-up failed before it answered: a token taken here is given back (the
        caller learnt nothing); one taken in Redis stays spent, as it always did."""
        if guess.local:
            _release(guess.entries)

    async def answered(self, guess: Guess, reason: Reason | None) -> None:
        """The guess taken stays spent if the look-up was a miss; a hit gets it back."""
        buckets, entries = guess.buckets, guess.entries
        miss = reason in MISSES
        if guess.local:
            # A local token: a hit gives it back here; a miss is spent in Redis, and stays
            # reserved here until Redis's count includes it.
            try:
                if miss:
                    self._learn(entries, await self._throttle.run("spend", buckets))
            finally:
                _release(entries)
        elif not miss:
            self._learn(entries, await self._throttle.run("refund", buckets))


def _release(entries: list[_Known]) -> None:
    """Gives back the tokens a look-up reserved here."""
    for known in entries:
        known.reserved = max(known.reserved - 1, 0)
