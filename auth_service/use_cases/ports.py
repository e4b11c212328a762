"""What auth's use cases need from the store: small repositories and a unit of work, so that
unit tests pass in-memory fakes and the store alone knows SQL."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from auth_service.domain import RefreshUse, Role, Status, User
from auth_service.domain.privacy import SessionRecord
from auth_service.domain.service_accounts import ServiceAccount


class UserRepository(Protocol):
    async def insert(self, user_id: str, email: str, password_hash: str) -> User:
        """The new user; raises domain.EmailTaken."""
        ...

    async def by_email(self, email: str) -> User | None: ...

    async def by_id(self, user_id: str, *, lock: bool = False) -> User | None: ...

    async def set_status(self, user_id: str, status: Status) -> User: ...

    async def set_role(self, user_id: str, role: Role) -> None: ...

    async def set_password_hash(self, user_id: str, password_hash: str) -> None: ...

    async def page(
        self, after: tuple[datetime, str] | None, limit: int, email_prefix: str = ""
    ) -> list[User]: ...

    async def emails(self, user_ids: list[str]) -> dict[str, str]: ...


class SessionRepository(Protocol):
    async def create(
        self, session_id: str, user_id: str, expires_at: datetime, token_hash: str
    ) -> None: ...

    async def add_refresh_token(self, session_id: str, token_hash: str) -> None: ...

    async def use_refresh_token(self, token_hash: str) -> RefreshUse: ...

    async def session_of_token(self, token_hash: str) -> str | None: ...

    async def revoke(self, session_id: str) -> None: ...

    async def revoke_all_of_user(self, user_id: str) -> list[str]:
        """The sessions it revoked."""
        ...


class Outbox(Protocol):
    async def add(self, event_id: str, user_id: str, routing_key: str, payload: bytes) -> None: ...

    async def notify(self) -> None: ...


class PersonalDataRepository(Protocol):
    async def erase(self, user_id: str, email_hash: bytes) -> None:
        """Drops a DELETED account's email and password hash, keeping the keyed hash."""
        ...

    async def sessions_of(self, user_id: str, limit: int) -> list[SessionRecord]: ...


class Revocations(Protocol):
    """Where revoked sessions are published to every service that checks tokens."""

    async def revoke(self, session_ids: Iterable[str], ttl_seconds: int) -> None: ...


class LoginGuard(Protocol):
    async def check(self, email: str, address: str) -> None:
        """Raises when this email or address failed too often lately."""
        ...

    async def failed(self, email: str, address: str) -> None: ...


class RegistrationGuard(Protocol):
    async def take(self, address: str) -> None:
        """Counts one registration from `address`; raises past its limit."""
        ...


@dataclass(frozen=True)
class Repositories:
    users: UserRepository
    sessions: SessionRepository
    outbox: Outbox
    personal_data: PersonalDataRepository


class UnitOfWork(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Repositories]:
        """Repositories whose writes commit together when the block ends without error."""
        ...

    @property
    def single(self) -> Repositories:
        """Repositories outside a transaction: each call is one statement of its own."""
        ...


class ServiceAccountRepository(Protocol):
    """Service accounts and their secret hashes; each call is a transaction of its own."""

    async def create(
        self, account_id: str, name: str, scopes: tuple[str, ...], secret_hash: str
    ) -> ServiceAccount: ...

    async def page(
        self, after: tuple[datetime, str] | None, limit: int
    ) -> list[ServiceAccount]: ...

    async def rotate(self, account_id: str, secret_hash: str, overlap: float) -> bool:
        """False when there is no live account."""
        ...

    async def delete(self, account_id: str) -> bool:
        """False when there was no live account."""
        ...

    async def by_secret(self, account_id: str, secret_hash: str) -> ServiceAccount | None: ...
