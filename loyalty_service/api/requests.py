"""Checks of request fields and page cursors; each failure names its field."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from common.errors import FieldViolation, InvalidArgument
from common.rpc.page_tokens import PageTokens, Position
from common.rpc.validation import uuid_field
from loyalty_service.domain.codes import ActiveCode
from protogen.loyalty.promo.v1 import promo_pb2

MAX_CODE = 64
MAX_TARIFF_ID = 64
MAX_REQUEST_ID = 128
MAX_NAME = 100
MAX_REFUND_REASON = 500  # as promo.proto declares it


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


def ends_position(active: ActiveCode) -> Position:
    """Where a page of active codes (ordered by end, then code) stopped."""
    ends = active.code.ends_at
    return (ends.isoformat() if ends else "infinity", active.code.code)


def ends_cursor(tokens: PageTokens, list_name: str, token: str) -> tuple[str, str] | None:
    found = tokens.decode(list_name, token, (str, str))
    if found is None:
        return None
    ends, after = str(found[0]), str(found[1])
    try:
        if ends != "infinity":
            datetime.fromisoformat(ends)
    except ValueError:
        raise InvalidArgument.of("page_token", "not a page token this list made") from None
    return ends, after
