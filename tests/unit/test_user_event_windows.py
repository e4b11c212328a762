"""A window of user events keeps each user's newest change only."""

from __future__ import annotations

from common.user_status import UserStatus
from loyalty_service.jobs.user_events import Change, newest_per_user


def test_each_user_keeps_the_highest_version_whatever_the_order() -> None:
    window = [
        Change("a", UserStatus.BLOCKED, 3),
        Change("b", UserStatus.ACTIVE, 1),
        Change("a", UserStatus.ACTIVE, 5),
        Change("a", UserStatus.BLOCKED, 4),
        Change("b", UserStatus.ACTIVE, 1),
    ]
    assert sorted(newest_per_user(window), key=lambda c: c.user_id) == [
        Change("a", UserStatus.ACTIVE, 5),
        Change("b", UserStatus.ACTIVE, 1),
    ]


def test_an_empty_window_gives_nothing() -> None:
    assert newest_per_user([]) == []
