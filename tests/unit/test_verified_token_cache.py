"""The verifier keeps a verified token and skips its signature check the next time, but never
past what a fresh check would refuse: revocation, expiry, a key no longer published, and
bytes that differ from the ones verified."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest

from auth_service.keys import KeyRing, new_private_pem, signing_key
from auth_service.token_issuer import TokenIssuer
from common.access import access_tokens
from common.access.access_tokens import ALGORITHM, ISSUER, TokenVerifier
from common.errors import ErrorKind, ServiceError


class Revocations:
    def __init__(self) -> None:
        self.revoked: set[str] = set()

    async def is_revoked(self, session_id: str) -> bool:
        return session_id in self.revoked


class CountingJwks:
    """The issuer's JWKS, with a switch to stop publishing its key (a retired key)."""

    def __init__(self, issuer: TokenIssuer) -> None:
        self.issuer = issuer
        self.published = True

    async def __call__(self) -> dict[str, Any]:
        return await self.issuer.jwks() if self.published else {"keys": []}


@pytest.fixture
def pem() -> str:
    return new_private_pem()


@pytest.fixture
def issuer(pem: str) -> TokenIssuer:
    return TokenIssuer(KeyRing.of_one(signing_key(pem)), 900)


def _token(pem: str, kid: str, **changes: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": str(uuid.uuid4()),
        "role": "user",
        "sid": str(uuid.uuid4()),
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 900,
        **changes,
    }
    return jwt.encode(claims, pem, algorithm=ALGORITHM, headers={"kid": kid})


def _count_decodes(verifier: TokenVerifier, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    decoded: list[str] = []
    original = verifier._decode

    def counted(token: str, key: Any) -> dict[str, Any]:
        decoded.append(token)
        return original(token, key)

    monkeypatch.setattr(verifier, "_decode", counted)
    return decoded


def _kid(issuer: TokenIssuer) -> str:
    return issuer.key.kid


async def test_a_second_call_skips_the_signature_check(
    issuer: TokenIssuer, pem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = TokenVerifier(issuer.jwks, Revocations(), "test")  # type: ignore[arg-type]
    token = _token(pem, _kid(issuer))
    decoded = _count_decodes(verifier, monkeypatch)
    first = await verifier.verify(token)
    second = await verifier.verify(token)
    assert first == second and decoded == [token]


async def test_revocation_is_checked_on_every_call(issuer: TokenIssuer, pem: str) -> None:
    revocations = Revocations()
    verifier = TokenVerifier(issuer.jwks, revocations, "test")  # type: ignore[arg-type]
    token = _token(pem, _kid(issuer))
    principal = await verifier.verify(token)
    revocations.revoked.add(principal.session_id)
    with pytest.raises(ServiceError) as raised:
        await verifier.verify(token)
    assert raised.value.kind is ErrorKind.UNAUTHENTICATED


async def test_an_expired_token_is_not_taken_from_the_cache(
    issuer: TokenIssuer, pem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its expiry the token is verified anew (and PyJWT refuses it then)."""
    verifier = TokenVerifier(issuer.jwks, Revocations(), "test")  # type: ignore[arg-type]
    token = _token(pem, _kid(issuer), exp=int(time.time()) + 60)
    await verifier.verify(token)
    decoded = _count_decodes(verifier, monkeypatch)
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    await verifier.verify(token)
    assert decoded == [token] and verifier._verified[token][1].expires_at < later


async def test_a_token_of_a_key_no_longer_published_is_refused(
    issuer: TokenIssuer, pem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    jwks = CountingJwks(issuer)
    verifier = TokenVerifier(jwks, Revocations(), "test")  # type: ignore[arg-type]
    token = _token(pem, _kid(issuer))
    await verifier.verify(token)
    jwks.published = False
    monkeypatch.setattr(access_tokens, "MIN_REFRESH_INTERVAL", -1.0)
    await verifier.refresh_keys()
    with pytest.raises(ServiceError) as raised:
        await verifier.verify(token)
    assert raised.value.kind is ErrorKind.UNAUTHENTICATED


async def test_other_bytes_with_the_same_claims_are_checked_anew(
    issuer: TokenIssuer, pem: str
) -> None:
    verifier = TokenVerifier(issuer.jwks, Revocations(), "test")  # type: ignore[arg-type]
    token = _token(pem, _kid(issuer))
    await verifier.verify(token)
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{'A' * len(signature)}"
    with pytest.raises(ServiceError) as raised:
        await verifier.verify(forged)
    assert raised.value.kind is ErrorKind.UNAUTHENTICATED


async def test_the_cache_stays_bounded(
    issuer: TokenIssuer, pem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(access_tokens, "VERIFIED_CACHE_SIZE", 3)
    verifier = TokenVerifier(issuer.jwks, Revocations(), "test")  # type: ignore[arg-type]
    for _ in range(10):
        await verifier.verify(_token(pem, _kid(issuer)))
    assert len(verifier._verified) == 3
