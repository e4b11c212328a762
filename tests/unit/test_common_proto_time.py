"""Timestamps built from integers are the ones protobuf's FromDatetime builds."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from common.rpc.proto_time import timestamp


def _reference(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 12, 3, 16, 5, 7, 123456, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # before the epoch
        datetime(2026, 12, 3, 16, 5, 7, 1, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2026, 12, 3, 16, 5, 7),  # naive: UTC
    ],
)
def test_a_timestamp_is_protobuf_s(value: datetime) -> None:
    assert timestamp(value) == _reference(value)


def test_random_instants_round_trip() -> None:
    rng = random.Random(27)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for _ in range(2000):
        value = epoch + timedelta(microseconds=rng.randint(-(10**16), 10**16))
        stamp = timestamp(value)
        assert stamp == _reference(value)
        assert stamp is not None and stamp.ToDatetime(UTC) == value


def test_none_leaves_the_field_unset() -> None:
    assert timestamp(None) is None
