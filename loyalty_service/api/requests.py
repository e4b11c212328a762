"""Checks of request fields and page cursors; each failure names its field."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from common.errors import FieldViolation, InvalidArgument
from common.validation import decode_page_token, encode_page_token, uuid_field
from loyalty.promo.v1 import promo_pb2

MAX_CODE = 64
MAX_TARIFF_ID = 64
MAX_REQUEST_ID = 128
MAX_NAME = 100


def text(value: str, field: str, max_length: int, *, required: bool = True) -> str:
    value = value.strip()
    if required and not value:
        raise InvalidArgument.of(field, "must not be empty")
    if len(value) > max_length:
        raise InvalidArgument.of(field, f"must be at most {max_length} characters")
    return value


def code_and_tariff(code: str, tariff_id: str) -> tuple[str, str]:
    problems = []
    for value, field, limit in ((code, "code", MAX_CODE), (tariff_id, "tariff_id", MAX_TARIFF_ID)):
        try:
            text(value, field, limit)
        except InvalidArgument as error:
            problems += error.violations
    if problems:
        raise InvalidArgument(problems)
    return code.strip().upper(), tariff_id.strip()


def uuids(values: Any, field: str) -> list[str]:
    problems: list[FieldViolation] = []
    result = []
    for index, value in enumerate(values):
        try:
            result.append(uuid_field(value, f"{field}[{index}]"))
        except InvalidArgument as error:
            problems += error.violations
    if problems:
        raise InvalidArgument(problems)
    return result


def code_status(value: Any) -> str:
    if value not in promo_pb2.PromoCodeStatus.values():
        raise InvalidArgument.of("status", "unknown promo code status")
    name = promo_pb2.PromoCodeStatus.Name(value)
    return "" if value == 0 else name.removeprefix("PROMO_CODE_STATUS_")


def cursor(token: str, key: str) -> Any:
    """The cursor value of a page token (None on the first page)."""
    decoded = decode_page_token(token)
    if decoded is None:
        return None
    if key not in decoded:
        raise InvalidArgument.of("page_token", "not a page token of this list")
    return decoded[key]


def next_token(rows: list[Any], size: int, position: Callable[[Any], dict[str, Any]]) -> str:
    """A token for the page after `rows` when there is one (`rows` holds size + 1 at most)."""
    if len(rows) <= size:
        return ""
    return encode_page_token(position(rows[size - 1]))


def time_cursor(token: str) -> tuple[datetime, str] | None:
    raw = cursor(token, "t")
    if raw is None:
        return None
    try:
        return datetime.fromisoformat(raw), uuid_field(cursor(token, "id"), "page_token")
    except (TypeError, ValueError):
        raise InvalidArgument.of("page_token", "not a page token of this list") from None


def ends_position(row: Any) -> dict[str, Any]:
    """Where a page of active codes (ordered by end, then code) stopped."""
    ends = row["ends_at"]
    return {"ends": ends.isoformat() if ends else "infinity", "after": row["code"]}


def ends_cursor(token: str) -> tuple[str, str] | None:
    ends, after = cursor(token, "ends"), cursor(token, "after")
    if ends is None:
        return None
    try:
        if ends != "infinity":
            datetime.fromisoformat(ends)
    except (TypeError, ValueError):
        raise InvalidArgument.of("page_token", "not a page token of this list") from None
    if not isinstance(after, str):
        raise InvalidArgument.of("page_token", "not a page token of this list")
    return ends, after


def int_cursor(token: str, key: str) -> int | None:
    raw = cursor(token, key)
    if raw is not None and not isinstance(raw, int):
        raise InvalidArgument.of("page_token", "not a page token of this list")
    return raw
