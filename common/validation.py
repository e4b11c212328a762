"""Checks of request fields shared by both services; each failure names its field."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from typing import Any

from common.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_size(value: int, field: str = "page_size") -> int:
    if value < 0 or value > MAX_PAGE_SIZE:
        raise InvalidArgument.of(field, f"must be between 0 and {MAX_PAGE_SIZE}")
    return value or DEFAULT_PAGE_SIZE


def uuid_field(value: str, field: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument.of(field, "must be a UUID") from None


def encode_page_token(cursor: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode()


def decode_page_token(token: str, field: str = "page_token") -> dict[str, Any] | None:
    """None for the first page; INVALID_ARGUMENT for a token this server did not make."""
    if not token:
        return None
    try:
        cursor = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error, UnicodeError):
        raise InvalidArgument.of(field, "not a page token from this service") from None
    if not isinstance(cursor, dict):
        raise InvalidArgument.of(field, "not a page token from this service")
    return cursor
