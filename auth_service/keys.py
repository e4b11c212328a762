"""Ed25519 signing keys and the ring of them a process signs and publishes with.

Keys live in auth's database with a state (next, current, previous, retired; see
migrations/auth/0006_signing_keys.sql): the JWKS lists every key that is not retired, and the
one current key signs. A configured key (AUTH_JWT_PRIVATE_KEY) or, in development, a generated
one seeds the table on the first start; `python -m auth_service rotate-key` rotates."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    private_key: Ed25519PrivateKey
    kid: str
    public_jwk: dict[str, str]


def new_private_pem() -> str:
    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


def signing_key(pem: str) -> SigningKey:
    """Load a PEM key; the kid is its RFC 7638 thumbprint, so every replica derives the same."""
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the JWT signing key must be an Ed25519 private key")
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = _b64url(raw)
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    kid = _b64url(hashlib.sha256(canonical.encode()).digest())[:16]
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}
    return SigningKey(key, kid, jwk)


def configured_pem(inline: str, file: str) -> str | None:
    if inline:
        return inline
    if file:
        return Path(file).read_text()
    return None


class KeyState(StrEnum):
    NEXT = "next"
    CURRENT = "current"
    PREVIOUS = "previous"
    RETIRED = "retired"


# Published in the JWKS: the next key before anyone signs with it, the previous one until the
# last token it signed has expired.
PUBLISHED = (KeyState.NEXT, KeyState.CURRENT, KeyState.PREVIOUS)


@dataclass(frozen=True)
class StoredKey:
    kid: str
    private_pem: str
    state: KeyState


@dataclass(frozen=True)
class KeyRing:
    """The key that signs and every key a verifier may meet."""

    current: SigningKey
    published: tuple[SigningKey, ...]

    @classmethod
    def of_one(cls, key: SigningKey) -> KeyRing:
        return cls(key, (key,))

    @property
    def kids(self) -> list[str]:
        return sorted(key.kid for key in self.published)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [key.public_jwk for key in self.published]}


class NoCurrentKey(RuntimeError):
    """The table holds no current key (it is seeded at start, so this is a broken table)."""


def ring_of(stored: list[StoredKey]) -> KeyRing:
    published = [(s.state, signing_key(s.private_pem)) for s in stored if s.state in PUBLISHED]
    current = [key for state, key in published if state is KeyState.CURRENT]
    if len(current) != 1:
        raise NoCurrentKey(f"{len(current)} current signing keys")
    return KeyRing(current[0], tuple(key for _, key in published))


def every_replica_publishes(kid: str, sightings: list[list[str]]) -> bool:
    """Whether each replica seen lately lists `kid` (none seen: nobody signs with old keys)."""
    return all(kid in kids for kids in sightings)
