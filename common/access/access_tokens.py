"""Offline verification of auth's access tokens (EdDSA JWTs with a `kid`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt

from common.access.revocation import RevocationList, RevocationsUnknown
from common.access.revocation_watch import RevocationWatch
from common.errors import ErrorKind, ServiceError, permission_denied, unauthenticated

ALGORITHM = "EdDSA"
ISSUER = "loyalty-auth"
ROLES = ("user", "admin")
MIN_REFRESH_INTERVAL = 5.0
# A service account's token names it as `service:<id>` and carries scopes instead of a role.
SERVICE_PREFIX = "service:"

# Returns the current JWKS ({"keys": [...]}) — fetched again when a token names an unknown kid.
JwksSource = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Principal:
    # A user's id, or `service:<id>` for a service account (which is never a user).
    user_id: str
    role: str
    session_id: str
    token_id: str
    expires_at: int
    # The token's `scope` claim. Being an admin implies none of them: each method that
    # accepts a scope says so, and accepts admins explicitly where it should.
    scopes: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_service(self) -> bool:
        return self.user_id.startswith(SERVICE_PREFIX)

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


def bearer_token(metadata: Any) -> str | None:
    """The token of an `authorization: Bearer …` metadata entry, if there is one."""
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise ValueError("bad scope")
    return frozenset(scope.split())


def _service_principal(claims: dict[str, Any]) -> Principal:
    """A service account's token: no role; its session (for revocation) is its `sid`, or the
    account itself when the token has none, so deleting the account can revoke it."""
    sub = str(claims["sub"])
    if "role" in claims or len(sub) <= len(SERVICE_PREFIX):
        raise ValueError("bad service token")
    session = str(claims.get("sid") or sub)
    return Principal(sub, "", session, str(claims["jti"]), int(claims["exp"]), _scopes(claims))


def _principal(claims: dict[str, Any]) -> Principal:
    if str(claims.get("sub", "")).startswith(SERVICE_PREFIX):
        return _service_principal(claims)
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
        _scopes(claims),
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
            # role and sid: checked in _principal (a service token has no role).
            options={"require": ["exp", "iat", "sub", "jti"]},
        )

    async def verify(self, token: str | None) -> Principal:
        """The token's principal; UNAUTHENTICATED when it is missing, bad, expired or revoked."""
        if not token:
            raise unauthenticated("missing bearer token", self._domain)
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = await self._key_for(str(kid)) if kid else None
            if key is None:
                raise unauthenticated("token signed with an unknown key", self._domain)
            principal = _principal(self._decode(token, key))
        except (jwt.PyJWTError, ValueError, TypeError) as error:
            raise unauthenticated(f"invalid token: {error}", self._domain) from None
        if await self._is_revoked(principal.session_id):
            raise unauthenticated("token revoked", self._domain)
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

    async def verify_user(self, token: str | None) -> Principal:
        """A person's token: methods that act as "me" refuse service accounts."""
        principal = await self.verify(token)
        if principal.is_service:
            raise permission_denied("this method needs a user's token", self._domain)
        return principal

    async def verify_admin(self, token: str | None) -> Principal:
        principal = await self.verify(token)
        if not principal.is_admin:
            raise permission_denied("this method needs role admin", self._domain)
        return principal
