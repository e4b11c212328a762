"""Auth's use cases: each that writes is one transaction, with its outbox event inside it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from auth_service import domain, events, passwords
from auth_service.domain import Role, Status, User
from auth_service.ratelimit import LoginThrottle, RegistrationThrottle
from auth_service.store import sessions, users
from auth_service.tokens import TokenIssuer, new_refresh_token, refresh_hash
from common.errors import ErrorKind, InvalidArgument, ServiceError
from common.revocation import RevocationList


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    access_expires_in: int


def _not_found(user_id: str) -> ServiceError:
    return domain.refusal(ErrorKind.NOT_FOUND, "USER_NOT_FOUND", f"no user {user_id}")


def _invalid_refresh() -> ServiceError:
    return domain.refusal(
        ErrorKind.UNAUTHENTICATED, "INVALID_REFRESH_TOKEN", "refresh token is invalid or expired"
    )


class Accounts:
    def __init__(
        self,
        pool: asyncpg.Pool,
        issuer: TokenIssuer,
        revocations: RevocationList,
        logins: LoginThrottle,
        registrations: RegistrationThrottle,
        password_min_length: int,
        refresh_ttl: int,
    ) -> None:
        self._pool = pool
        self.issuer = issuer
        self._revocations = revocations
        self._logins = logins
        self._registrations = registrations
        self._min_length = password_min_length
        self._refresh_ttl = refresh_ttl

    async def register(self, email: str, password: str, address: str | None = None) -> User:
        """A new account; `address` is the client's, counted against its registration limit
        (None: the operator's command line, not limited)."""
        email = domain.check_credentials_input(email, password, self._min_length)
        if address is not None:
            await self._registrations.take(address)
        password_hash = await passwords.hash_password(password)
        async with self._pool.acquire() as conn, conn.transaction():
            try:
                row = await users.insert(conn, str(uuid.uuid4()), email, password_hash)
            except users.EmailTaken:
                raise domain.refusal(
                    ErrorKind.ALREADY_EXISTS, "EMAIL_TAKEN", "this email is already registered"
                ) from None
            user = users.to_user(row)
            await events.record(conn, user, events.REGISTERED)
        return user

    async def login(self, email: str, password: str, address: str) -> TokenPair:
        email = domain.normalize_email(email)
        if not email or not password:
            field = "email" if not email else "password"
            raise InvalidArgument.of(field, "must not be empty")
        if len(password) > domain.MAX_PASSWORD_LENGTH:
            # No registered password is longer, and hashing a huge one is a cheap way to load us.
            raise InvalidArgument.of(
                "password", f"must be at most {domain.MAX_PASSWORD_LENGTH} characters"
            )
        await self._logins.check(email, address)
        row = await users.by_email(self._pool, email)
        ok, new_hash = await passwords.verify_password(password, row and row["password_hash"])
        if row is None or not ok:
            await self._logins.failed(email, address)
            raise domain.invalid_credentials()
        user = users.to_user(row)
        domain.check_may_sign_in(user.status)
        if new_hash:
            await users.set_password_hash(self._pool, user.user_id, new_hash)
        return await self._open_session(user)

    async def _open_session(self, user: User) -> TokenPair:
        session_id = str(uuid.uuid4())
        token, token_hash = new_refresh_token()
        expires_at = datetime.now(UTC) + timedelta(seconds=self._refresh_ttl)
        async with self._pool.acquire() as conn, conn.transaction():
            await sessions.create(conn, session_id, user.user_id, expires_at, token_hash)
        return self._pair(user, session_id, token)

    def _pair(self, user: User, session_id: str, refresh_token: str) -> TokenPair:
        access = self.issuer.access_token(user, session_id)
        return TokenPair(access, refresh_token, self.issuer.access_ttl)

    async def refresh(self, refresh_token: str) -> TokenPair:
        if not refresh_token:
            raise InvalidArgument.of("refresh_token", "must not be empty")
        async with self._pool.acquire() as conn, conn.transaction():
            use = await sessions.use_refresh_token(conn, refresh_hash(refresh_token))
            if use.session_id is None or use.user_id is None:
                raise _invalid_refresh()
            if use.reused:
                await sessions.revoke(conn, use.session_id)
            else:
                user = users.to_user(await users.by_id(conn, use.user_id))
                domain.check_may_sign_in(user.status)
                token, token_hash = new_refresh_token()
                await sessions.add_refresh_token(conn, use.session_id, token_hash)
                return self._pair(user, use.session_id, token)
        # Reuse of a rotated token: the whole session goes, access tokens included.
        await self._revocations.revoke([use.session_id], self.issuer.access_ttl)
        raise domain.refusal(
            ErrorKind.UNAUTHENTICATED,
            "REFRESH_TOKEN_REUSED",
            "this refresh token was already used; the session is revoked",
        )

    async def logout(self, refresh_token: str) -> None:
        if not refresh_token:
            raise InvalidArgument.of("refresh_token", "must not be empty")
        session_id = await sessions.session_of_token(self._pool, refresh_hash(refresh_token))
        if session_id is None:
            raise _invalid_refresh()
        await sessions.revoke(self._pool, session_id)
        await self._revocations.revoke([session_id], self.issuer.access_ttl)

    async def delete_account(self, user_id: str) -> None:
        await self._change_status(user_id, Status.DELETED, check=False)

    async def set_status(self, user_id: str, status: Status) -> User:
        return await self._change_status(user_id, status, check=True)

    async def _change_status(self, user_id: str, status: Status, check: bool) -> User:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await users.by_id(conn, user_id, lock=True)
            if row is None:
                raise _not_found(user_id)
            user = users.to_user(row)
            if check:
                domain.check_status_change(user.status, status)
            if not domain.status_changed(user.status, status):
                return user
            user = users.to_user(await users.set_status(conn, user_id, status))
            await events.record(conn, user, events.STATUS_CHANGED)
            revoked = (
                await sessions.revoke_all_of_user(conn, user_id)
                if status is not Status.ACTIVE
                else []
            )
        await self._revocations.revoke(revoked, self.issuer.access_ttl)
        return user

    async def get_user(self, user_id: str) -> User:
        row = await users.by_id(self._pool, user_id)
        if row is None:
            raise _not_found(user_id)
        return users.to_user(row)

    async def list_users(self, after: tuple[datetime, str] | None, limit: int) -> list[User]:
        """Users by creation, oldest first, after the (created_at, user_id) position."""
        rows = await users.page(self._pool, after, limit)
        return [users.to_user(r) for r in rows]

    async def create_admin(self, email: str, password: str) -> User:
        """Creates an administrator, or makes an existing account one: then it gets this
        password and loses every session, so whoever registered the email first keeps
        nothing."""
        email = domain.check_credentials_input(email, password, self._min_length)
        try:
            user_id = (await self.register(email, password)).user_id
        except ServiceError as error:
            if error.reason != "EMAIL_TAKEN":
                raise
            user_id = await self._take_over(email, password)
        async with self._pool.acquire() as conn:
            await users.set_role(conn, user_id, Role.ADMIN)
            return users.to_user(await users.by_id(conn, user_id))

    async def _take_over(self, email: str, password: str) -> str:
        password_hash = await passwords.hash_password(password)
        async with self._pool.acquire() as conn, conn.transaction():
            row = await users.by_email(conn, email)
            if row is None:  # registered and deleted in between: nothing to take over
                raise _not_found(email)
            user_id = str(row["user_id"])
            await users.set_password_hash(conn, user_id, password_hash)
            revoked = await sessions.revoke_all_of_user(conn, user_id)
        await self._revocations.revoke(revoked, self.issuer.access_ttl)
        return user_id
