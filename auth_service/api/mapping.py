"""Domain values to and from protobuf."""

from __future__ import annotations

from typing import Any

from auth_service.domain import Status, User
from auth_service.use_cases.sessions import TokenPair
from common.errors import InvalidArgument
from common.rpc.proto_time import timestamp
from common.rpc.user_status_proto import to_proto
from protogen.loyalty.auth.v1 import auth_pb2


def user_message(user: User) -> auth_pb2.User:
    if user.status is Status.DELETED:  # erased: what stays is the id and the status
        return auth_pb2.User(user_id=user.user_id, status=to_proto(user.status))
    return auth_pb2.User(
        user_id=user.user_id,
        email=user.email,
        status=to_proto(user.status),
        role=auth_pb2.Role.Value(f"ROLE_{user.role.value.upper()}"),
        created_at=timestamp(user.created_at),
        version=user.version,
        updated_at=timestamp(user.updated_at),
    )


def token_pair_message(pair: TokenPair) -> auth_pb2.TokenPair:
    return auth_pb2.TokenPair(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        access_expires_in=pair.access_expires_in,
        token_type="Bearer",
    )


def admin_settable_status(value: Any) -> Status:
    """ACTIVE or BLOCKED; anything else is a malformed request."""
    allowed = {
        auth_pb2.USER_STATUS_ACTIVE: Status.ACTIVE,
        auth_pb2.USER_STATUS_BLOCKED: Status.BLOCKED,
    }
    if value not in allowed:
        raise InvalidArgument.of("status", "must be USER_STATUS_ACTIVE or USER_STATUS_BLOCKED")
    return allowed[value]
