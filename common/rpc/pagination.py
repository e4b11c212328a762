"""Pages of a list, the same way in both services: the API layer asks for one item more than
the page holds, and when it came, encodes where the page stopped in a signed page token
(common/rpc/page_tokens.py); these read such positions back, naming page_token when one is bad."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from common.errors import InvalidArgument
from common.rpc.page_tokens import PageTokens, Position
from common.rpc.request_rules import in_time_range
from common.rpc.validation import uuid_field


def next_token(
    tokens: PageTokens,
    list_name: str,
    rows: list[Any],
    size: int,
    position: Callable[[Any], Position],
) -> str:
    """A token for the page after `rows` when there is one (`rows` holds size + 1 at most)."""
    if len(rows) <= size:
        return ""
    return tokens.encode(list_name, position(rows[size - 1]))


def text_cursor(tokens: PageTokens, list_name: str, token: str) -> str | None:
    found = tokens.decode(list_name, token, (str,))
    return None if found is None else str(found[0])


def uuid_cursor(tokens: PageTokens, list_name: str, token: str) -> str | None:
    found = text_cursor(tokens, list_name, token)
    return None if found is None else uuid_field(found, "page_token")


def int_cursor(tokens: PageTokens, list_name: str, token: str) -> int | None:
    found = tokens.decode(list_name, token, (int,))
    return None if found is None else int(found[0])


def time_cursor(tokens: PageTokens, list_name: str, token: str) -> tuple[datetime, str] | None:
    """(created_at, id) of the last row of the page before."""
    found = tokens.decode(list_name, token, (str, str))
    if found is None:
        return None
    try:
        at = datetime.fromisoformat(str(found[0]))
    except ValueError:
        raise InvalidArgument.of("page_token", "not a page token this list made") from None
    if at.tzinfo is None or not in_time_range(at):
        raise InvalidArgument.of("page_token", "not a page token this list made")
    return at, uuid_field(str(found[1]), "page_token")


def time_position(created_at: datetime, item_id: str) -> Position:
    return (created_at.isoformat(), item_id)
