"""Request fields in the forms the use cases take, and page cursors. The fields' limits are
the proto rules' alone (protos/, checked by common/rpc/request_rules.py before any handler runs,
INVALID_ARGUMENT naming the field), so nothing here checks a length or a format again."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from common.errors import InvalidArgument
from common.rpc.page_tokens import PageTokens, Position
from common.rpc.validation import uuid_field
from loyalty_service.domain.codes import ActiveCode, normalize_code
from protogen.loyalty.promo.v1 import promo_pb2


def code_and_tariff(code: str, tariff_id: str) -> tuple[str, str]:
    return normalize_code(code), tariff_id.strip()


def uuids(values: Iterable[str], field: str) -> list[str]:
    """The canonical (lower-case) form of the UUIDs; the proto rules let an empty item through
    (for a single field it means "unset"), which in a list is no UUID: INVALID_ARGUMENT."""
    return [uuid_field(value, field) for value in values]


def code_status(value: promo_pb2.PromoCodeStatus.ValueType) -> str:
    """The status filter's name ("" for UNSPECIFIED: any); the rules refused unknown values."""
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
