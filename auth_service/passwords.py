"""Password hashing: argon2id first, older schemes deprecated and upgraded on login.
Hashing runs in a thread because it is slow on purpose."""

from __future__ import annotations

import asyncio

from passlib.context import CryptContext

_CONTEXT = CryptContext(schemes=["argon2", "pbkdf2_sha256"], deprecated="auto")
# Verified for unknown emails so a miss costs as much as a wrong password.
_DUMMY_HASH = _CONTEXT.hash("not a real password, only timing")


async def hash_password(password: str) -> str:
    hashed: str = await asyncio.to_thread(_CONTEXT.hash, password)
    return hashed


async def verify_password(password: str, hashed: str | None) -> tuple[bool, str | None]:
    """Whether it matches, and a new hash when the stored one uses a deprecated scheme."""
    if hashed is None:
        await asyncio.to_thread(_CONTEXT.verify, password, _DUMMY_HASH)
        return False, None
    ok, new_hash = await asyncio.to_thread(_CONTEXT.verify_and_update, password, hashed)
    return bool(ok), new_hash
