"""Service accounts: created, listed, their secrets rotated, deleted by admins; and the
client-credentials grant that turns a client id and secret into an access token."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from auth_service.domain import reasons
from auth_service.domain.service_accounts import ServiceAccount, check_new_account, subject_of
from auth_service.token_issuer import TokenIssuer, client_secret_hash, new_client_secret
from auth_service.use_cases.ports import LoginGuard, Revocations, ServiceAccountRepository
from common.errors import InvalidArgument

# The login throttle counts a failed grant under this subject, so a client id can never
# share a bucket with an email (which always holds an "@").
_THROTTLE_SUBJECT = "client:"
MAX_SECRET_LENGTH = 256


@dataclass(frozen=True)
class NewServiceAccount:
    account: ServiceAccount
    client_secret: str  # shown once, never stored


@dataclass(frozen=True)
class ServiceToken:
    access_token: str
    expires_in: int
    scope: str


def _check_credentials_given(client_id: str, client_secret: str) -> None:
    if not client_id or not client_secret:
        field = "client_id" if not client_id else "client_secret"
        raise InvalidArgument.of(field, "must not be empty")
    if len(client_secret) > MAX_SECRET_LENGTH:
        raise InvalidArgument.of("client_secret", f"must be at most {MAX_SECRET_LENGTH} characters")


def _account_id(client_id: str) -> str | None:
    """The account a client id names; None for one that cannot name any."""
    try:
        return str(uuid.UUID(client_id))
    except ValueError:
        return None


class ServiceAccounts:
    def __init__(
        self,
        repository: ServiceAccountRepository,
        issuer: TokenIssuer,
        revocations: Revocations,
        attempts: LoginGuard,
        rotation_overlap: float,
    ) -> None:
        self._repository = repository
        self._issuer = issuer
        self._revocations = revocations
        self._attempts = attempts
        self._overlap = rotation_overlap

    async def create(self, name: str, scopes: list[str]) -> NewServiceAccount:
        name, checked = check_new_account(name, scopes)
        secret, secret_hash = new_client_secret()
        account = await self._repository.create(str(uuid.uuid4()), name, checked, secret_hash)
        return NewServiceAccount(account, secret)

    async def list(self, after: tuple[datetime, str] | None, limit: int) -> list[ServiceAccount]:
        return await self._repository.page(after, limit)

    async def rotate_secret(self, account_id: str) -> str:
        """The new secret; the old ones keep working for the overlap."""
        secret, secret_hash = new_client_secret()
        if not await self._repository.rotate(account_id, secret_hash, self._overlap):
            raise reasons.service_account_not_found(account_id)
        return secret

    async def delete(self, account_id: str) -> None:
        """Its secrets stop at once (the row is marked), its tokens as soon as every verifier
        sees the revoked subject (the same path as a revoked session)."""
        if not await self._repository.delete(account_id):
            raise reasons.service_account_not_found(account_id)
        await self._revocations.revoke([subject_of(account_id)], self._issuer.access_ttl)

    async def issue_token(self, client_id: str, client_secret: str, address: str) -> ServiceToken:
        _check_credentials_given(client_id, client_secret)
        subject = f"{_THROTTLE_SUBJECT}{client_id}"
        await self._attempts.check(subject, address)
        account_id = _account_id(client_id)
        account = (
            await self._repository.by_secret(account_id, client_secret_hash(client_secret))
            if account_id is not None
            else None
        )
        if account is None:
            await self._attempts.failed(subject, address)
            raise reasons.invalid_client()
        token = self._issuer.service_token(account)
        return ServiceToken(token, self._issuer.access_ttl, " ".join(account.scopes))
