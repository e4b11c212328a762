"""The user status both services share, and its protobuf form, read and written in one place."""

from __future__ import annotations

from datetime import UTC, datetime

from common.rpc.proto_time import timestamp, when
from common.rpc.user_status_proto import from_proto, to_proto
from common.user_status import UserStatus
from protogen.loyalty.auth.v1 import auth_pb2


def test_every_status_goes_to_protobuf_and_back() -> None:
    for status in UserStatus:
        assert auth_pb2.UserStatus.Name(to_proto(status)) == f"USER_STATUS_{status.value}"
        assert from_proto(to_proto(status)) is status


def test_unspecified_and_unknown_numbers_are_no_status() -> None:
    assert from_proto(auth_pb2.USER_STATUS_UNSPECIFIED) is None
    assert from_proto(999) is None


def test_timestamps_round_trip_and_none_stays_unset() -> None:
    at = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    message = auth_pb2.User(created_at=timestamp(at))
    assert when(message, "created_at") == at
    assert timestamp(None) is None
    assert when(auth_pb2.User(), "created_at") is None
