"""How many failed logins and registrations a caller has left (token buckets in Redis).

Failed logins are counted three ways, after OWASP's authentication guidance: per (email,
client address), which is what one guesser at one account spends; per email, a higher ceiling
that stops a guessing attack spread over many addresses; and per address, which stops one
address trying many accounts. Successful logins cost nothing. A spent bucket is a back-off,
not a lock: it refills smoothly, and the refusal says exactly when the next try can go."""

from __future__ import annotations

from dataclasses import dataclass

from auth_service.domain.reasons import DOMAIN, AuthReason
from common.access.throttle import Bucket, Limit, Throttle
from common.errors import ServiceError, too_many


@dataclass(frozen=True)
class LoginLimits:
    per_email_address: Limit
    per_email: Limit
    per_address: Limit


class LoginThrottle:
    def __init__(self, throttle: Throttle, limits: LoginLimits) -> None:
        self._throttle = throttle
        self._limits = limits

    def _buckets(self, email: str, address: str) -> list[Bucket]:
        return [
            Bucket("login:pair", f"{email}\n{address}", self._limits.per_email_address),
            Bucket("login:email", email, self._limits.per_email),
            Bucket("login:addr", address, self._limits.per_address),
        ]

    async def check(self, email: str, address: str) -> None:
        """RESOURCE_EXHAUSTED, with the time left, while any bucket is empty."""
        wait = await self._throttle.check(self._buckets(email, address))
        if wait > 0:
            raise too_many_logins(wait)

    async def failed(self, email: str, address: str) -> None:
        await self._throttle.spend(self._buckets(email, address))


class RegistrationThrottle:
    def __init__(self, throttle: Throttle, per_address: Limit) -> None:
        self._throttle = throttle
        self._per_address = per_address

    async def take(self, address: str) -> None:
        """Counts one registration attempt; RESOURCE_EXHAUSTED once the address has none left."""
        wait = await self._throttle.acquire([Bucket("register:addr", address, self._per_address)])
        if wait > 0:
            raise too_many(
                AuthReason.TOO_MANY_REGISTRATIONS.value,
                "too many registrations from this address",
                DOMAIN,
                wait,
            )


def too_many_logins(wait: float) -> ServiceError:
    return too_many(
        AuthReason.TOO_MANY_LOGIN_ATTEMPTS.value, "too many failed login attempts", DOMAIN, wait
    )
