"""Accounts: registration, status changes, lookup and listing, administrators. Each use case
that writes is one transaction, with its outbox event inside it."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime

from auth_service import domain, passwords
from auth_service.domain import Role, Status, User
from auth_service.domain.privacy import email_hash
from auth_service.token_issuer import TokenIssuer
from auth_service.use_cases import events
from auth_service.use_cases.ports import (
    RegistrationGuard,
    Repositories,
    Revocations,
    UnitOfWork,
)
from common.errors import ServiceError


class Accounts:
    def __init__(
        self,
        store: UnitOfWork,
        issuer: TokenIssuer,
        revocations: Revocations,
        registrations: RegistrationGuard,
        password_min_length: int,
        email_hash_key: bytes = b"",
    ) -> None:
        self._store = store
        self.issuer = issuer
        self._revocations = revocations
        self._registrations = registrations
        self._min_length = password_min_length
        self._email_key = email_hash_key

    async def register(self, email: str, password: str, address: str | None = None) -> User:
        """A new account; `address` is the client's, counted against its registration limit
        (None: the operator's command line, not limited)."""
        email = domain.check_credentials_input(email, password, self._min_length)
        if address is not None:
            await self._registrations.take(address)
        password_hash = await passwords.hash_password(password)
        async with self._store.transaction() as tx:
            try:
                user = await tx.users.insert(str(uuid.uuid4()), email, password_hash)
            except domain.EmailTaken:
                raise domain.email_taken() from None
            await events.record(tx.outbox, user, events.REGISTERED)
        return user

    async def delete_account(self, user_id: str) -> None:
        """The user's own deletion, or an admin's (DeleteUser): erases the email and password
        hash and revokes every session; deleting a deleted account changes nothing."""
        await self._change_status(user_id, Status.DELETED, check=False)

    async def delete_user(self, user_id: str) -> None:
        """An admin's deletion of any account: the same erasure; NOT_FOUND for no such user."""
        await self._change_status(user_id, Status.DELETED, check=False)

    async def set_status(self, user_id: str, status: Status) -> User:
        return await self._change_status(user_id, status, check=True)

    async def _change_status(self, user_id: str, status: Status, check: bool) -> User:
        async with self._store.transaction() as tx:
            user = await tx.users.by_id(user_id, lock=True)
            if user is None:
                raise domain.user_not_found(user_id)
            if check:
                domain.check_status_change(user.status, status)
            if not domain.status_changed(user.status, status):
                return user
            user = await tx.users.set_status(user_id, status)
            if status is Status.DELETED:
                user = await self._erase(tx, user)
            await events.record(tx.outbox, user, events.STATUS_CHANGED)
            revoked = (
                await tx.sessions.revoke_all_of_user(user_id) if status is not Status.ACTIVE else []
            )
        await self._revocations.revoke(revoked, self.issuer.access_ttl)
        return user

    async def _erase(self, tx: Repositories, user: User) -> User:
        await tx.personal_data.erase(user.user_id, email_hash(self._email_key, user.email))
        return dataclasses.replace(user, email="", password_hash="")

    async def get_user(self, user_id: str) -> User:
        user = await self._store.single.users.by_id(user_id)
        if user is None:
            raise domain.user_not_found(user_id)
        return user

    async def list_users(
        self, after: tuple[datetime, str] | None, limit: int, email_prefix: str = ""
    ) -> list[User]:
        """Users by creation, oldest first, after the (created_at, user_id) position; with
        `email_prefix`, those whose email starts with it (case-insensitive)."""
        return await self._store.single.users.page(after, limit, email_prefix.strip())

    async def emails(self, user_ids: list[str]) -> dict[str, str]:
        """id → email of the known ids ("" for a deleted account)."""
        unique = list(dict.fromkeys(user_ids))
        return await self._store.single.users.emails(unique) if unique else {}

    async def create_admin(self, email: str, password: str) -> User:
        """Creates an administrator, or makes an existing account one: then it gets this
        password and loses every session, so whoever registered the email first keeps
        nothing."""
        email = domain.check_credentials_input(email, password, self._min_length)
        try:
            user_id = (await self.register(email, password)).user_id
        except ServiceError as error:
            if error.reason != domain.AuthReason.EMAIL_TAKEN:
                raise
            user_id = await self._take_over(email, password)
        users = self._store.single.users
        await users.set_role(user_id, Role.ADMIN)
        return await self.get_user(user_id)

    async def _take_over(self, email: str, password: str) -> str:
        password_hash = await passwords.hash_password(password)
        async with self._store.transaction() as tx:
            user = await tx.users.by_email(email)
            if user is None:  # registered and deleted in between: nothing to take over
                raise domain.user_not_found(email)
            await tx.users.set_password_hash(user.user_id, password_hash)
            revoked = await tx.sessions.revoke_all_of_user(user.user_id)
        await self._revocations.revoke(revoked, self.issuer.access_ttl)
        return user.user_id
