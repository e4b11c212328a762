"""Password hashing: argon2id first, older schemes deprecated and upgraded on login.

Hashing is slow on purpose, so it runs off the event loop, one hash at a time per lane, each
on one core (parallelism 1). There are two lanes, each a dedicated thread: new hashes
(registration, create-admin) on one, sign-in checks on the other. A registration flood then
queues behind itself and never in front of a login, and a login storm takes at most one
core from the other calls of the machine."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from passlib.context import CryptContext

_CONTEXT = CryptContext(
    schemes=["argon2", "pbkdf2_sha256"], deprecated="auto", argon2__parallelism=1
)
_HASHING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="password-hashing")
_VERIFYING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="password-verifying")
# Verified for unknown emails so a miss costs as much as a wrong password.
_DUMMY_HASH = _CONTEXT.hash("not a real password, only timing")
T = TypeVar("T")


async def _off_loop(lane: ThreadPoolExecutor, work: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(lane, work, *args)


async def hash_password(password: str) -> str:
    return await _off_loop(_HASHING, _CONTEXT.hash, password)


async def verify_password(password: str, hashed: str | None) -> tuple[bool, str | None]:
    """Whether it matches, and a new hash when the stored one uses a deprecated scheme."""
    if hashed is None:
        await _off_loop(_VERIFYING, _CONTEXT.verify, password, _DUMMY_HASH)
        return False, None
    ok, new_hash = await _off_loop(_VERIFYING, _CONTEXT.verify_and_update, password, hashed)
    return bool(ok), new_hash
