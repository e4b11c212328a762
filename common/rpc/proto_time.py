"""google.protobuf.Timestamp to and from aware datetimes, once for every service."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(value: datetime | None) -> Timestamp | None:
    """The message for `value` (a naive one read as UTC, as protobuf's FromDatetime does);
    None (the field left unset) for None. Built from the difference to the epoch in integers:
    a purchase carries two, and FromDatetime's calendar arithmetic cost more than the rest of
    its mapping."""
    if value is None:
        return None
    since = (value if value.tzinfo is not None else value.replace(tzinfo=UTC)) - _EPOCH
    return Timestamp(seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1000)


def now_timestamp() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def when(message: Any, name: str) -> datetime | None:
    """The field `name` of `message` as an aware UTC datetime; None when it is unset."""
    return getattr(message, name).ToDatetime(UTC) if message.HasField(name) else None
