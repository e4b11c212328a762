"""Sessions: sign in, rotate the refresh token, sign out."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from auth_service import domain, passwords
from auth_service.domain import User
from auth_service.token_issuer import TokenIssuer, new_refresh_token, refresh_hash
from auth_service.use_cases.ports import (
    LoginGuard,
    Revocations,
    UnitOfWork,
)
from common.errors import InvalidArgument


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    access_expires_in: int


def _check_login_input(email: str, password: str) -> None:
    if not email or not password:
        field = "email" if not email else "password"
        raise InvalidArgument.of(field, "must not be empty")
    if len(password) > domain.MAX_PASSWORD_LENGTH:
        # No registered password is longer, and hashing a huge one is a cheap way to load us.
        raise InvalidArgument.of(
            "password", f"must be at most {domain.MAX_PASSWORD_LENGTH} characters"
        )


def _check_token_given(refresh_token: str) -> None:
    if not refresh_token:
        raise InvalidArgument.of("refresh_token", "must not be empty")


class Sessions:
    def __init__(
        self,
        store: UnitOfWork,
        issuer: TokenIssuer,
        revocations: Revocations,
        logins: LoginGuard,
        refresh_ttl: int,
    ) -> None:
        self._store = store
        self.issuer = issuer
        self._revocations = revocations
        self._logins = logins
        self._refresh_ttl = refresh_ttl

    async def login(self, email: str, password: str, address: str) -> TokenPair:
        email = domain.normalize_email(email)
        _check_login_input(email, password)
        await self._logins.check(email, address)
        user = await self._store.single.users.by_email(email)
        ok, new_hash = await passwords.verify_password(
            password, user.password_hash if user else None
        )
        if user is None or not ok:
            await self._logins.failed(email, address)
            raise domain.invalid_credentials()
        domain.check_may_sign_in(user.status)
        if new_hash:
            await self._store.single.users.set_password_hash(user.user_id, new_hash)
        return await self._open_session(user)

    async def _open_session(self, user: User) -> TokenPair:
        session_id = str(uuid.uuid4())
        token, token_hash = new_refresh_token()
        expires_at = datetime.now(UTC) + timedelta(seconds=self._refresh_ttl)
        async with self._store.transaction() as tx:
            await tx.sessions.create(session_id, user.user_id, expires_at, token_hash)
        return self._pair(user, session_id, token)

    def _pair(self, user: User, session_id: str, refresh_token: str) -> TokenPair:
        access = self.issuer.access_token(user, session_id)
        return TokenPair(access, refresh_token, self.issuer.access_ttl)

    async def refresh(self, refresh_token: str) -> TokenPair:
        _check_token_given(refresh_token)
        async with self._store.transaction() as tx:
            use = await tx.sessions.use_refresh_token(refresh_hash(refresh_token))
            if use.session_id is None or use.user_id is None:
                raise domain.invalid_refresh()
            if use.reused:
                await tx.sessions.revoke(use.session_id)
            else:
                user = await tx.users.by_id(use.user_id)
                assert user is not None  # a session's user is never removed, only deleted
                domain.check_may_sign_in(user.status)
                token, token_hash = new_refresh_token()
                await tx.sessions.add_refresh_token(use.session_id, token_hash)
                return self._pair(user, use.session_id, token)
        # Reuse of a rotated token: the whole session goes, access tokens included.
        await self._revocations.revoke([use.session_id], self.issuer.access_ttl)
        raise domain.refresh_token_reused()

    async def logout(self, refresh_token: str) -> None:
        _check_token_given(refresh_token)
        sessions = self._store.single.sessions
        session_id = await sessions.session_of_token(refresh_hash(refresh_token))
        if session_id is None:
            raise domain.invalid_refresh()
        await sessions.revoke(session_id)
        await self._revocations.revoke([session_id], self.issuer.access_ttl)
