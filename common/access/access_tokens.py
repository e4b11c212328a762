"""Offline verification of auth's access tokens (EdDSA JWTs with a `kid`).

A token names either a user (`sub` a UUID, `role`) or a service account (`sub`
`service:<id>`, `scope`, no role). `verify` and `verify_admin` accept users only, so every
method written for users refuses a service token with PERMISSION_DENIED without a line of its
own; a method meant for services too calls `verify_identity` and asks `has_scope`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt

from common.access.caller import caller_id
from common.access.revocation import RevocationList, RevocationsUnknown
from common.access.revocation_watch import RevocationWatch
from common.errors import ErrorKind, ServiceError, permission_denied, unauthenticated

ALGORITHM = "EdDSA"
ISSUER = "loyalty-auth"
ROLES = ("user", "admin")
SERVICE_PREFIX = "service:"
MIN_REFRESH_INTERVAL = 5.0
# Verified tokens kept per process (each a few hundred bytes): a signature check costs more
# than the rest of a cheap call, and a client sends the same token until it expires.
VERIFIED_CACHE_SIZE = 20_000
# A service account's token names it as `service:<id>` and carries scopes instead of a role.
SERVICE_PREFIX = "service:"

# Returns the current JWKS ({"keys": [...]}) — fetched again when a token names an unknown kid.
JwksSource = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Principal:
    """A user's token. Being an admin implies no scope: each method that accepts a scope
    says so, and accepts admins explicitly where it should."""

    user_id: str
    role: str
    session_id: str
    token_id: str
    expires_at: int

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_service(self) -> bool:
        return False

    @property
    def subject(self) -> str:
        return self.user_id

    def has_scope(self, scope: str) -> bool:
        """Users hold no scopes; what a user may do follows from the role."""
        return False


@dataclass(frozen=True)
class ServicePrincipal:
    """A service account's token: scopes instead of a role, never a user."""

    service_id: str
    scopes: frozenset[str]
    session_id: str  # the subject, revoked when the account is deleted
    token_id: str
    expires_at: int

    @property
    def is_admin(self) -> bool:
        return False

    @property
    def is_service(self) -> bool:
        return True

    @property
    def subject(self) -> str:
        return f"{SERVICE_PREFIX}{self.service_id}"

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


# Whoever a valid token names.
Identity = Principal | ServicePrincipal


def bearer_token(metadata: Any) -> str | None:
    """The token of an `authorization: Bearer …` metadata entry, if there is one."""
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


def _identity(claims: dict[str, Any]) -> Identity:
    subject = str(claims["sub"])
    if subject.startswith(SERVICE_PREFIX):
        return _service(claims, subject.removeprefix(SERVICE_PREFIX))
    return _principal(claims)


def _service(claims: dict[str, Any], service_id: str) -> ServicePrincipal:
    scope = claims.get("scope")
    if "role" in claims or not isinstance(scope, str) or not claims.get("sid"):
        raise ValueError("a service token has a scope and a sid, and no role")
    service_id = str(uuid.UUID(service_id))
    return ServicePrincipal(
        service_id,
        frozenset(scope.split()),
        str(claims["sid"]),
        str(claims["jti"]),
        int(claims["exp"]),
    )


def _principal(claims: dict[str, Any]) -> Principal:
    try:
        user_id = str(uuid.UUID(str(claims["sub"])))
    except (KeyError, ValueError) as error:
        raise ValueError("bad sub") from error
    if claims.get("role") not in ROLES or not claims.get("sid"):
        raise ValueError("bad role or sid")
    return Principal(
        user_id,
        claims["role"],
        str(claims["sid"]),
        str(claims["jti"]),
        int(claims["exp"]),
    )


class TokenVerifier:
    def __init__(
        self,
        jwks_source: JwksSource,
        revocations: RevocationList,
        domain: str,
        watch: RevocationWatch | None = None,
    ) -> None:
        self._source = jwks_source
        self._revocations = revocations
        # The local copy answers when it can; Redis when it is unsure (or there is none).
        self._watch = watch
        self._domain = domain
        self._keys: dict[str, jwt.PyJWK] = {}
        self._refreshed_at = float("-inf")
        # Keyed by the whole token, not its jti: only the very bytes that were verified match.
        self._verified: dict[str, tuple[str, Identity]] = {}

    async def refresh_keys(self) -> None:
        jwks = await self._source()
        self._keys = {k["kid"]: jwt.PyJWK(k, ALGORITHM) for k in jwks.get("keys", [])}
        self._refreshed_at = time.monotonic()

    async def _key_for(self, kid: str) -> jwt.PyJWK | None:
        # Tokens with made-up kids must not turn into a flood of JWKS fetches.
        stale = time.monotonic() - self._refreshed_at > MIN_REFRESH_INTERVAL
        if kid not in self._keys and stale:
            await self.refresh_keys()
        return self._keys.get(kid)

    def _decode(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        return jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "jti", "sid"]},
        )

    async def verify(self, token: str | None) -> Principal:
        """The token's user; UNAUTHENTICATED when it is missing, bad, expired or revoked,
        PERMISSION_DENIED when it is a service account's."""
        identity = await self.verify_identity(token)
        if isinstance(identity, ServicePrincipal):
            raise permission_denied(
                "this method needs a user's token, not a service's", self._domain
            )
        return identity

    async def verify_identity(self, token: str | None) -> Identity:
        """The user or service the token names; UNAUTHENTICATED when it is missing, bad,
        expired or revoked."""
        if not token:
            raise unauthenticated("missing bearer token", self._domain)
        principal = self._remembered(token) or await self._verified_now(token)
        # Revocation is checked on every call, cached or not: a logout takes effect at once.
        if await self._is_revoked(principal.session_id):
            raise unauthenticated("token revoked", self._domain)
        caller_id.set(principal.subject)  # the audit trail's actor (common.rpc.audit)
        return principal

    def _remembered(self, token: str) -> Identity | None:
        """A token verified before, while it has not expired and its key is still published
        (a retired key's tokens are checked again, and refused)."""
        found = self._verified.get(token)
        if found is None:
            return None
        kid, principal = found
        if principal.expires_at <= time.time() or kid not in self._keys:
            del self._verified[token]
            return None
        return principal

    async def _verified_now(self, token: str) -> Identity:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = await self._key_for(str(kid)) if kid else None
            if key is None:
                raise unauthenticated("token signed with an unknown key", self._domain)
            principal = _identity(self._decode(token, key))
        except (jwt.PyJWTError, ValueError, TypeError) as error:
            raise unauthenticated(f"invalid token: {error}", self._domain) from None
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            # The oldest entry goes (dicts keep insertion order): a flood of fresh tokens
            # costs their own signature checks, never memory.
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (str(kid), principal)
        return principal

    async def _is_revoked(self, session_id: str) -> bool:
        known = self._watch.knows(session_id) if self._watch is not None else None
        if known is not None:
            return known
        try:
            return await self._revocations.is_revoked(session_id)
        except RevocationsUnknown:
            raise ServiceError(
                ErrorKind.UNAVAILABLE,
                "REVOCATIONS_RESTORING",
                "revoked sessions are being restored after a cache loss; retry shortly",
                self._domain,
            ) from None

    async def verify_admin(self, token: str | None) -> Principal:
        principal = await self.verify(token)
        if not principal.is_admin:
            raise permission_denied("this method needs role admin", self._domain)
        return principal
