"""google.protobuf.Timestamp to and from aware datetimes, once for every service."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp


def timestamp(value: datetime | None) -> Timestamp | None:
    """The message for `value`; None (the field left unset) for None."""
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def now_timestamp() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def when(message: Any, name: str) -> datetime | None:
    """The field `name` of `message` as an aware UTC datetime; None when it is unset."""
    return getattr(message, name).ToDatetime(UTC) if message.HasField(name) else None
