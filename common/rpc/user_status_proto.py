"""The protobuf form of a user's status (loyalty.auth.v1.UserStatus), for the transports and
the events: kept out of common/user_status.py so that the domains never reach generated code."""

from __future__ import annotations

from common.user_status import UserStatus
from protogen.loyalty.auth.v1 import auth_pb2

_PREFIX = "USER_STATUS_"


def from_proto(value: int) -> UserStatus | None:
    """The status a protobuf UserStatus names; None for UNSPECIFIED or a number unknown here."""
    if value not in auth_pb2.UserStatus.values():
        return None
    name = auth_pb2.UserStatus.Name(auth_pb2.UserStatus.ValueType(value)).removeprefix(_PREFIX)
    return UserStatus(name) if name in UserStatus.__members__ else None


def to_proto(status: UserStatus) -> auth_pb2.UserStatus.ValueType:
    return auth_pb2.UserStatus.Value(f"{_PREFIX}{status.value}")
