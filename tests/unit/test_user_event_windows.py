"""A window of user events keeps each user's newest change only."""

from __future__ import annotations

from loyalty_service.user_events import Change, newest_per_user


def test_each_user_keeps_the_highest_version_whatever_the_order() -> None:
    window = [
        Change("a", "BLOCKED", 3),
        Change("b", "ACTIVE", 1),
        Change("a", "ACTIVE", 5),
        Change("a", "BLOCKED", 4),
        Change("b", "ACTIVE", 1),
    ]
    assert sorted(newest_per_user(window), key=lambda c: c.user_id) == [
        Change("a", "ACTIVE", 5),
        Change("b", "ACTIVE", 1),
    ]


def test_an_empty_window_gives_nothing() -> None:
    assert newest_per_user([]) == []
