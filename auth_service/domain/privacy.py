"""What stays of a deleted account's address: a keyed hash, never the address.

HMAC-SHA256 with the operator's key (AUTH_EMAIL_HASH_KEY) over the canonical email, so the
same address always gives the same hash (re-registrations of a deleted address can be
counted) while nobody without the key can test a guessed address against it."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from auth_service.domain import credentials


def email_hash(key: bytes, email: str) -> bytes:
    return hmac.new(key, credentials.lookup_email(email).encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class SessionRecord:
    """A session as its owner sees it in their export."""

    session_id: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
