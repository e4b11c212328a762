"""Calls about "my own data" (the exports) are for people: a service account's token, or any
principal that is not a user id, is refused before anything is read."""

from __future__ import annotations

import uuid

from common.access.access_tokens import Principal
from common.errors import permission_denied


def person_of(principal: Principal, domain: str) -> str:
    """The caller's user id; PERMISSION_DENIED for a principal that is not a person."""
    try:
        return str(uuid.UUID(principal.user_id))
    except ValueError:
        raise permission_denied("only a user has personal data to export", domain) from None
