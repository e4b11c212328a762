"""Opaque, tamper-evident page tokens, the same for every list method of both services.

A token is base64url (no padding) of `payload || tag`: the payload is the compact JSON array
`[list name, position...]`, the tag the first 16 bytes of HMAC-SHA256 over the payload with the
services' shared secret (`PAGE_TOKEN_SECRET`). Decoding checks the tag, the list the token was
made for, and the type of every position value, so a token edited, forged, or made by another
list is INVALID_ARGUMENT naming `page_token` and never reaches SQL.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from common.errors import InvalidArgument

FIELD = "page_token"
MAX_TOKEN_LENGTH = 1024
_TAG_BYTES = 16
_MAX_TEXT = 256
_INT64 = 2**63

Position = tuple[str | int, ...]


class PageTokens:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"page-token:" + secret.encode()).digest()

    def encode(self, list_name: str, position: Position) -> str:
        payload = json.dumps([list_name, *position], separators=(",", ":")).encode()
        raw = payload + self._tag(payload)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def decode(self, list_name: str, token: str, shape: tuple[type, ...]) -> Position | None:
        """The position a token holds (None for the first page), each value of `shape`'s type."""
        if not token:
            return None
        values = self._verified(token)
        if (
            not isinstance(values, list)
            or values[:1] != [list_name]
            or len(values) != len(shape) + 1
            or not all(_fits(v, t) for v, t in zip(values[1:], shape, strict=True))
        ):
            raise _bad()
        return tuple(values[1:])

    def _verified(self, token: str) -> object:
        if len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise _bad()
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, binascii.Error):
            raise _bad() from None
        payload, tag = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
        if len(raw) <= _TAG_BYTES or not hmac.compare_digest(tag, self._tag(payload)):
            raise _bad()
        try:
            return json.loads(payload)
        except ValueError:
            raise _bad() from None

    def _tag(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_TAG_BYTES]


def _fits(value: object, kind: type) -> bool:
    if kind is int:
        return type(value) is int and -_INT64 <= value < _INT64
    return type(value) is str and len(value) <= _MAX_TEXT


def _bad() -> InvalidArgument:
    return InvalidArgument.of(FIELD, "not a page token this list made")
