"""Issuing access tokens (EdDSA JWTs) and opaque refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from typing import Any

import jwt

from auth_service.domain import User, access_claims
from auth_service.domain.service_accounts import ServiceAccount, service_claims
from auth_service.keys import KeyRing, SigningKey
from common.access.access_tokens import ALGORITHM, ISSUER


class TokenIssuer:
    """Signs with the ring's current key; the key refresher replaces the ring as keys rotate."""

    def __init__(self, ring: KeyRing, access_ttl: int) -> None:
        self.ring = ring
        self.access_ttl = access_ttl

    @property
    def key(self) -> SigningKey:
        return self.ring.current

    def use(self, ring: KeyRing) -> None:
        self.ring = ring

    def access_token(self, user: User, session_id: str) -> str:
        claims = access_claims(
            user, session_id, uuid.uuid4().hex, int(time.time()), self.access_ttl, ISSUER
        )
        return jwt.encode(claims, self.key.private_key, ALGORITHM, headers={"kid": self.key.kid})

    def service_token(self, account: ServiceAccount) -> str:
        claims = service_claims(
            account, uuid.uuid4().hex, int(time.time()), self.access_ttl, ISSUER
        )
        return jwt.encode(claims, self.key.private_key, ALGORITHM, headers={"kid": self.key.kid})

    async def jwks(self) -> dict[str, Any]:
        return self.ring.jwks()


def new_refresh_token() -> tuple[str, str]:
    """A refresh token and the hash that is stored in its place."""
    token = secrets.token_urlsafe(32)
    return token, refresh_hash(token)


def refresh_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_client_secret() -> tuple[str, str]:
    """A client secret (256 random bits) and the hash that is stored in its place: with that
    much entropy a fast hash is as safe as a slow one (docs/auth.md, "Service accounts")."""
    secret = secrets.token_urlsafe(32)
    return secret, client_secret_hash(secret)


def client_secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
